"""Issue 23.7: shard numbers have gaps (empty hash buckets, split buckets), so the job writes shards.txt, the sorted
shard names, which WebDataset, `schemas.reader` and the trainer's loader read instead of a brace pattern.

.venv/bin/python -m pytest -q tests/pipeline/test_shard_list.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import webdataset as wds

from pipeline.job import run
from schemas.reader import iter_samples, shard_urls
from schemas.tables import SHARD_LIST_FILE, read_shard_list
from schemas.validate import validate
from trainer.config import DataConfig
from trainer.data import Loader

from ..factories import make_bundle

CFG = DataConfig(context_microturns=4, batch_size=2, num_workers=0, shuffle_buffer=4, frame_patches=2, text_slots=8)


@pytest.fixture(scope="module")
def gappy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 conversations hashed into 16 buckets: most bucket numbers have no shard."""
    root = tmp_path_factory.mktemp("shard-list")
    for i in range(5):
        make_bundle(root / "in" / f"c{i}", conv_id=f"c{i}", seconds=2.0)
    run(["--input", str(root / "in"), "--output", str(root / "ds"), "--num_shards", "16"])
    return root / "ds"


def test_shards_txt_lists_every_shard_sorted_and_the_numbers_have_gaps(gappy: Path) -> None:
    manifest = json.loads((gappy / "manifest.json").read_text())
    names = [s["name"] for s in manifest["shards"]]
    on_disk = sorted(p.name for p in gappy.glob("shard-*.tar"))
    text = (gappy / SHARD_LIST_FILE).read_text(encoding="utf-8")
    assert text == "".join(f"{n}\n" for n in on_disk) and names == on_disk
    numbers = [int(re.match(r"shard-(\d+)", n).group(1)) for n in on_disk]
    assert numbers != list(range(len(numbers)))  # a brace pattern shard-{00000..0000N}.tar would miss files
    assert validate(str(gappy)).ok


def test_webdataset_reads_the_list_as_the_readme_shows(gappy: Path) -> None:
    dataset = str(gappy)
    # README: urls = [f"{dataset}/{name}" for name in open(f"{dataset}/shards.txt").read().split()]
    urls = [f"{dataset}/{name}" for name in open(f"{dataset}/shards.txt").read().split()]
    keys = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, handler=wds.reraise_exception)]
    manifest = json.loads((gappy / "manifest.json").read_text())
    # the tar holds windows (every stream once); the manifest counts samples as (window, perspective)
    assert len(keys) == len(set(keys)) == 5
    assert manifest["counts"]["samples"] == 10


def test_reader_and_trainer_accept_the_list_and_a_subset_of_it(gappy: Path, tmp_path: Path) -> None:
    listed = str(gappy / SHARD_LIST_FILE)
    assert shard_urls(listed) == shard_urls(str(gappy))
    whole = sorted(s["__key__"] for s in iter_samples(str(gappy)))
    assert sorted(s["__key__"] for s in iter_samples(listed)) == whole
    first, *rest = (gappy / SHARD_LIST_FILE).read_text().split()
    subset = tmp_path / "train.txt"  # a user's list elsewhere: absolute paths, a comment and a blank line
    subset.write_text(f"# training shards\n\n{gappy / first}\n", encoding="utf-8")
    assert shard_urls(str(subset)) == [str(gappy / first)]
    assert 0 < len(list(iter_samples(str(subset)))) < len(whole)
    batch = next(Loader(listed, CFG))  # `microturn train --data DATASET/shards.txt`
    assert batch["kind"].shape[0] == CFG.batch_size and batch["target_dmel"].any()


def test_a_wrong_or_missing_list_is_a_violation_and_a_bad_list_is_refused(gappy: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ds"
    copy.mkdir()
    for path in gappy.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(gappy)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(gappy)).write_bytes(path.read_bytes())
    listed = copy / SHARD_LIST_FILE
    listed.write_text("".join(sorted(listed.read_text().splitlines(keepends=True))[1:]), encoding="utf-8")
    assert any("shards.txt: does not list the manifest's shards" in v for v in validate(str(copy)).violations)
    listed.unlink()
    assert any("shards.txt: missing" in v for v in validate(str(copy)).violations)
    bad = tmp_path / "bad.txt"
    bad.write_text("shard-00000.tar\nREADME.md\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: 'README.md' is not a shard"):
        read_shard_list(str(bad))
    bad.write_bytes(b"shard-00000.tar\n\xff\n")
    with pytest.raises(ValueError, match="must be UTF-8 text"):
        read_shard_list(str(bad))
