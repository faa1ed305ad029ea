"""Issue 13.8, adversarial inputs through the whole job: every bad input ends in the rejected list with a kind and a
readable reason, the good conversation is written, the job goes on, nothing hangs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.job import run

from ..factories import make_bundle


def _mutate(directory: Path, **changes: object) -> None:
    bundle = json.loads((directory / "bundle.json").read_text())
    bundle.update(changes)
    (directory / "bundle.json").write_text(json.dumps(bundle))


def _rejected(out: Path) -> dict[str, tuple[str, str, str]]:
    rows = pq.read_table(out / "rejected.parquet").to_pylist()
    return {Path(r["input"]).parent.name if r["input"].endswith("bundle.json") else r["input"]: r for r in rows}


@pytest.mark.timeout(300)
def test_one_job_survives_every_bad_bundle(tmp_path: Path) -> None:
    root = tmp_path / "in"
    make_bundle(root / "good", conv_id="good")
    cases = {
        "ms_int": ({"model_speakers": 5}, "bad_model_speakers"),
        "ms_str": ({"model_speakers": "main"}, "bad_model_speakers"),
        "ann_int": ({"annotations": 5}, "bad_annotation"),
        "align_int": ({"words": {"alignments": 5}}, "bad_transcript"),
        "channel_bool": ({"tracks": [{"speaker": "A", "path": "A.wav", "channel": True}]}, "bad_track"),
        "rttm_zero": ({"rttm": "/dev/zero"}, "path_outside_input"),
        "text_passwd": ({"words": None, "text": {"A": {"path": "/etc/passwd"}}}, "path_outside_input"),
        "track_outside": ({"tracks": [{"speaker": "A", "path": "/etc/hostname"}]}, "path_outside_input"),
        "dotdot": ({"tracks": [{"speaker": "A", "path": "../" * 12 + "etc/hostname"}]}, "path_outside_input"),
        "surrogate_path": ({"tracks": [{"speaker": "A", "path": "A\ud800.wav"}]}, "unencodable_path"),
    }
    for name, (changes, _) in cases.items():
        make_bundle(root / name, conv_id=name)
        if changes.get("words", 1) is None:
            bundle = json.loads((root / name / "bundle.json").read_text())
            del bundle["words"], changes["words"]
            (root / name / "bundle.json").write_text(json.dumps(bundle))
        _mutate(root / name, **changes)
    # numbers and nesting the JSON parser itself fails on
    for name, digits, kind in (("int400", 400, "bad_number"), ("int5000", 5000, "malformed_json")):
        make_bundle(root / name, conv_id=name)
        text = (root / name / "bundle.json").read_text()
        (root / name / "bundle.json").write_text(text.replace('"start": 0.1,', f'"start": {"9" * digits},'))
        cases[name] = ({}, kind)
    make_bundle(root / "deep", conv_id="deep")
    (root / "deep" / "bundle.json").write_text('{"id": "z", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    cases["deep"] = ({}, "too_deep")
    # a FIFO as bundle.json and as the words file: refused, not waited on
    make_bundle(root / "fifo_bundle", conv_id="fifo_bundle")
    (root / "fifo_bundle" / "bundle.json").unlink()
    os.mkfifo(root / "fifo_bundle" / "bundle.json")
    cases["fifo_bundle"] = ({}, "not_a_regular_file")
    make_bundle(root / "fifo_words", conv_id="fifo_words")
    os.mkfifo(root / "fifo_words" / "words.json")
    _mutate(root / "fifo_words", words="words.json")
    cases["fifo_words"] = ({}, "not_a_regular_file")
    # a text file over --max_text_mb
    make_bundle(root / "too_big", conv_id="too_big")
    (root / "too_big" / "words.json").write_text("[" + " " * 2_000_000 + "]")
    _mutate(root / "too_big", words="words.json")
    cases["too_big"] = ({}, "file_too_large")
    # a lone surrogate in the id and a speaker name: escaped, written
    make_bundle(root / "surrogate_id", conv_id="sid")
    _mutate(root / "surrogate_id", id="s\ud800", model_speakers=["A"])
    # a directory whose name is Latin-1 bytes: written
    make_bundle(root / "latin", conv_id="latin")
    os.rename(root / "latin", os.fsdecode(os.fsencode(root) + b"/caf\xe9"))

    out = tmp_path / "out"
    manifest = run(["--input", str(root), "--output", str(out), "--max_text_mb", "1"])

    rejected = _rejected(out)
    for name, (_, kind) in cases.items():
        assert name in rejected, (name, sorted(rejected))
        assert rejected[name]["kind"] == kind, (name, rejected[name])
        assert rejected[name]["stage"] == "read"
    assert "root:" not in json.dumps(list(rejected.values()))  # no file contents in any reason
    index = pq.read_table(out / "index").to_pylist()
    written = {r["conversation_id"] for r in index}
    assert written == {"good", "s\\ud800", "latin"}
    assert manifest["counts"]["conversations_written"] == 3
    assert manifest["counts"]["rejected"] == len(cases)


def test_outside_paths_allowed_on_request_still_bounded(tmp_path: Path) -> None:
    root = tmp_path / "in"
    make_bundle(root / "good", conv_id="good")
    make_bundle(root / "zero", conv_id="zero")
    _mutate(root / "zero", rttm="/dev/zero")
    out = tmp_path / "out"
    run(["--input", str(root), "--output", str(out), "--allow_outside_paths"])
    rejected = _rejected(out)
    assert rejected["zero"]["kind"] == "not_a_regular_file"


def test_manifest_line_with_a_bad_byte_is_one_rejection(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "a", conv_id="a")
    good = json.loads((tmp_path / "in" / "a" / "bundle.json").read_text())
    good["tracks"] = [{"speaker": t["speaker"], "path": "a/" + t["path"]} for t in good["tracks"]]
    manifest_path = tmp_path / "in" / "all.jsonl"
    manifest_path.write_bytes(json.dumps(good).encode() + b'\n{"id": "caf\xe9"}\n')
    out = tmp_path / "out"
    manifest = run(["--input", str(manifest_path), "--output", str(out)])
    rows = pq.read_table(out / "rejected.parquet").to_pylist()
    assert [(r["input"], r["kind"]) for r in rows] == [(f"{manifest_path}:2", "not_utf_text")]
    assert "line 2" in rows[0]["reason"]
    assert manifest["counts"]["conversations_written"] == 1
