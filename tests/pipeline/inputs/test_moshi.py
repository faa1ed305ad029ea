"""moshi-finetune's own data.jsonl index is read (issue 13.2), and a run that rejects every input fails loudly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from cli.run import cmd_run
from pipeline.job import run
from pipeline.read import list_inputs, load_conversation
from schemas.bundle import BundleError
from schemas.reader import iter_samples

from ...factories import tone


def _moshi_corpus(root: Path) -> Path:
    """data.jsonl beside audio/ with two X.wav + X.json pairs (one in a sub-directory) and one wav without json."""
    (root / "audio" / "sub").mkdir(parents=True)
    lines = []
    for i, rel in enumerate(("audio/talk_a.wav", "audio/sub/talk_b.wav", "audio/bare.wav")):
        sf.write(root / rel, np.stack([tone(2.0, seed=i), tone(2.0, freq=500, seed=i + 7)], axis=1), 24_000)
        if "bare" not in rel:
            (root / rel).with_suffix(".json").write_text(
                json.dumps({"alignments": [["hello", [0.1, 0.5], "SPEAKER_MAIN"], ["yes", [0.9, 1.2], "SPEAKER_0"]]})
            )
        lines.append(json.dumps({"path": rel, "duration": 2.0}))
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    return root / "data.jsonl"


def test_moshi_finetune_index_is_read(tmp_path: Path) -> None:
    index = _moshi_corpus(tmp_path / "corpus")
    m = run(["--input", str(index), "--output", str(tmp_path / "out")])
    assert (m["counts"]["conversations_written"], m["counts"]["rejected"]) == (2, 1)
    samples = {s["meta.json"]["conversation_id"]: s for s in iter_samples(str(tmp_path / "out"))}
    assert set(samples) == {"talk_a", "talk_b"}  # id from the file name, one perspective (model = main)
    for conv_id in ("talk_a", "talk_b"):
        s = samples[conv_id]
        assert s["meta.json"]["speakers"] == {"input": "user", "others": [], "output": "main"}
        assert s["meta.json"]["source"] == "moshi-finetune"
        assert [(w["text"], w["stream"]) for w in s["words.json"]] == [("hello", "output"), ("yes", "input")]
    # no X.json: a conversation without transcript, rejected at align as any such input is without --aligner
    (rej,) = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert rej["input"].endswith("data.jsonl:3") and rej["stage"] == "align" and "no transcript" in rej["reason"]


def test_run_that_rejects_every_input_exits_non_zero_with_the_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # in-process: the CLI's exit code is cmd_run's return value (a subprocess may abort at exit, issue 13.8)
    (tmp_path / "bad.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"language": "en", "tracks": []}),
                json.dumps({"language": "en", "tracks": []}),
                "{broken",
            ]
        )
        + "\n"
    )
    assert cmd_run(["--input", str(tmp_path / "bad.jsonl"), "--output", str(tmp_path / "out")]) == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "nothing written" in x]
    assert "all 3 inputs were rejected" in line and "2 x read: bundle has no 'id'" in line
    assert line.index("2 x read") < line.index("1 x read: manifest line is not valid JSON")  # commonest first
    index = _moshi_corpus(tmp_path / "corpus")
    assert cmd_run(["--input", str(index), "--output", str(tmp_path / "out2")]) == 0  # 2 written, 1 rejected
    assert "nothing written" not in capsys.readouterr().err


def test_index_line_without_a_wav_path_is_a_read_rejection_with_its_kind(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text(json.dumps({"path": "talk.mp3", "duration": 2.0}) + "\n")
    (ref,) = list_inputs(str(tmp_path / "data.jsonl"))
    with pytest.raises(BundleError, match="must name a .wav file") as e:
        load_conversation(ref)
    assert e.value.kind == "bad_index_line"
