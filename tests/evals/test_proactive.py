"""evals/proactive.py load_conversations: conversations stream one at a time from a dataset or a directory of
bundles, so the scorer's memory does not grow with the dataset (its scores: tests/synth/test_proactive.py)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas.checked_reader
from evals.proactive import load_conversations, score
from schemas.tables import read_index_rows


def test_the_first_conversation_comes_before_the_dataset_is_read(
    demo_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = str(demo_dataset / "dataset")
    read: list[str] = []
    real = schemas.checked_reader.checked_samples

    def counted(data: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for sample in real(data, **kwargs):
            read.append(sample["meta.json"]["conversation_id"])
            yield sample

    monkeypatch.setattr(schemas.checked_reader, "checked_samples", counted)
    convs = load_conversations(dataset)
    assert read == []  # nothing read until asked
    first_id, _ = next(convs)
    windows = sum(1 for _ in itertools.takewhile(lambda c: c == first_id, read))
    assert len(read) == windows + 1 and read[-1] != first_id  # its own windows and the next one's first only
    rest = dict(convs)
    total = len(read)
    assert total > windows + 1 and first_id not in rest and len(rest) == 4
    rows = {r["conversation_id"]: dict(r["tags"]) for r in read_index_rows(dataset)}  # what it read before
    assert {first_id, *rest} == set(rows) and all(rest[c].tags == rows[c] for c in rest)


def test_bundles_are_read_one_at_a_time(demo_dataset: Path, tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    shutil.copytree(demo_dataset / "bundles", bundles)
    paths = sorted(bundles.glob("**/bundle.json"))
    paths[-1].write_text("{not json", encoding="utf-8")  # read only when its turn comes
    convs = load_conversations(str(bundles))
    assert next(convs)[0] == "demo-0001"
    with pytest.raises(ValueError):
        list(convs)


def test_a_conversation_id_twice_is_refused_and_the_score_takes_the_stream(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bundle.json").write_text('{"id": "same", "tracks": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="conversation 'same' comes twice"):
        list(load_conversations(str(tmp_path)))
    shutil.rmtree(tmp_path / "b")
    assert score(load_conversations(str(tmp_path)), {})["conversations"] == 1
    with pytest.raises(ValueError, match="neither a dataset"):
        load_conversations(str(tmp_path / "a" / "nothing"))
