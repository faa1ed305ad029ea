"""The Beam job end to end on tiny generated inputs: grid exactness, accounting, layouts, determinism, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.job import run
from schemas.reader import iter_samples
from schemas.validate import validate

from ..factories import make_bundle, tone


def _outputs(directory: Path) -> dict[str, bytes]:
    """Every output file (shards, index/ files, tables) by relative path; the work directory aside."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "_work" not in p.relative_to(directory).parts
    }


def test_grid_exactness_for_durations_on_and_off_the_200ms_grid(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "even", conv_id="even", seconds=2.0)
    make_bundle(tmp_path / "in" / "odd", conv_id="odd", seconds=2.13)
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--window_microturns", "4"])
    assert manifest["counts"]["samples"] == 2 * 2 * 3  # 10 and 11 micro-turns -> 3 windows of 4, two perspectives
    per_conv: dict[tuple[str, str], int] = {}
    for s in iter_samples(str(tmp_path / "out")):
        meta = s["meta.json"]
        for stream in ("input", "output"):
            assert s[f"{stream}.dmel.npy"].shape == (4, 16, 80)
        assert s["mask.npy"].sum() == meta["num_microturns"]
        per_conv[(meta["conversation_id"], meta["perspective"])] = (
            per_conv.get((meta["conversation_id"], meta["perspective"]), 0) + meta["num_microturns"]
        )
        for w in s["words.json"]:
            t = w["end_s"] if w["stream"] == "input" else w["start_s"]
            assert w["microturn"] == int(round(t * 16000)) // 3200  # §3: user words by end, model words by start
        if meta["conversation_id"] == "odd" and meta["window"] == 2:
            assert meta["num_microturns"] == 3 and meta["last_valid_samples"] == 34_080 - 10 * 3_200
    assert per_conv == {("even", "A"): 10, ("even", "B"): 10, ("odd", "A"): 11, ("odd", "B"): 11}
    assert validate(str(tmp_path / "out")).ok


def _bad_inputs(root: Path) -> dict[str, str]:
    """Bundles that must be rejected, with the words their reason must contain."""
    expect = {}
    make_bundle(root / "truncated", conv_id="truncated")
    (root / "truncated" / "A.wav").write_bytes((root / "truncated" / "A.wav").read_bytes()[:20_000])
    expect["truncated"] = "truncated WAV"
    make_bundle(root / "empty", conv_id="empty")
    (root / "empty" / "B.wav").write_bytes(b"")
    expect["empty"] = "empty (0 bytes)"
    make_bundle(root / "notaudio", conv_id="notaudio")
    (root / "notaudio" / "A.wav").write_text("RIFF? no, just text")
    expect["notaudio"] = "not decodable"
    make_bundle(root / "late", conv_id="late", words=[{"text": "late", "start": 2.5, "end": 3.6, "speaker": "A"}])
    expect["late"] = "end after the audio ends"
    make_bundle(root / "badjson", conv_id="badjson")
    (root / "badjson" / "bundle.json").write_text('{"id": "badjson", "tracks": [')
    expect["badjson"] = "not valid JSON"
    make_bundle(root / "channels", conv_id="channels")
    obj = json.loads((root / "channels" / "bundle.json").read_text())
    obj["tracks"][1]["channel"] = 1  # B.wav is mono
    (root / "channels" / "bundle.json").write_text(json.dumps(obj))
    expect["channels"] = "channel map asks for channel 1"
    make_bundle(root / "missing", conv_id="missing")
    (root / "missing" / "B.wav").unlink()
    expect["missing"] = "does not exist"
    make_bundle(root / "zdup", conv_id="good1")  # sorts after good1/, so good1 is kept
    expect["zdup"] = "duplicate conversation id"
    return expect


def test_every_input_is_written_or_rejected_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "in"
    make_bundle(root / "good1", conv_id="good1")
    make_bundle(root / "good2", conv_id="good2", seconds=4.0)
    expect = _bad_inputs(root)
    proc = subprocess.run(
        [sys.executable, "-m", "microturn_cli", "run", "--input", str(root), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    c = manifest["counts"]
    assert (c["inputs"], c["conversations_written"], c["rejected"]) == (2 + len(expect), 2, len(expect))
    rejected = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    by_dir = {Path(r["input"]).parent.name: r for r in rejected}
    assert set(by_dir) == set(expect)
    for name, words in expect.items():
        assert words in by_dir[name]["reason"], (name, by_dir[name])
    assert by_dir["truncated"]["stage"] == "decode" and by_dir["late"]["stage"] == "align"
    assert by_dir["badjson"]["stage"] == "read"
    kinds = {
        "truncated": ("decode", "truncated_wav"),
        "empty": ("decode", "empty_file"),
        "notaudio": ("decode", "undecodable_audio"),
        "late": ("align", "words_past_end"),
        "badjson": ("read", "malformed_json"),
        "channels": ("decode", "bad_channel_map"),
        "missing": ("decode", "missing_file"),
        "zdup": ("read", "duplicate_id"),
    }
    assert {name: (r["stage"], r["kind"]) for name, r in by_dir.items()} == kinds
    assert manifest["rejected_by"] == {
        "align": {"words_past_end": 1},
        "read": {"duplicate_id": 1, "malformed_json": 1},
        "decode": {
            "bad_channel_map": 1,
            "empty_file": 1,
            "missing_file": 1,
            "truncated_wav": 1,
            "undecodable_audio": 1,
        },
    }
    keys = {s["meta.json"]["conversation_id"] for s in iter_samples(str(tmp_path / "out"))}
    assert keys == {"good1", "good2"}
    assert validate(str(tmp_path / "out")).ok
    assert "2 written, 8 rejected" in proc.stdout


def test_jsonl_manifest_and_moshi_layout(tmp_path: Path) -> None:
    b = make_bundle(tmp_path / "b1", conv_id="m1")
    line = json.loads((b / "bundle.json").read_text())
    line["tracks"] = [{**t, "path": f"b1/{t['path']}"} for t in line["tracks"]]
    (tmp_path / "list.jsonl").write_text(json.dumps(line) + "\n\n" + "{broken\n")
    m = run(["--input", str(tmp_path / "list.jsonl"), "--output", str(tmp_path / "out1")])
    assert (m["counts"]["conversations_written"], m["counts"]["rejected"]) == (1, 1)

    moshi = tmp_path / "moshi"
    moshi.mkdir()
    sf.write(moshi / "talk.wav", np.stack([tone(2.0), tone(2.0, freq=500)], axis=1), 24_000)
    (moshi / "talk.json").write_text(
        json.dumps({"alignments": [["hello", [0.1, 0.5], "SPEAKER_MAIN"], ["yes", [0.9, 1.2], "SPEAKER_0"]]})
    )
    m = run(["--input", str(moshi), "--output", str(tmp_path / "out2")])
    assert m["counts"]["samples"] == 1  # model_speakers = main only
    (s,) = list(iter_samples(str(tmp_path / "out2")))
    assert s["meta.json"]["speakers"] == {"input": "user", "others": [], "output": "main"}
    assert [w["stream"] for w in s["words.json"]] == ["output", "input"]


@pytest.fixture(scope="module")
def many_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(10):
        make_bundle(root / f"c{i:02d}", conv_id=f"c.{i:02d}", seconds=25.0 + 0.37 * i, rate=(16_000, 22_050)[i % 2])
    return root


def test_same_bytes_with_one_worker_two_processes_and_a_rerun(many_bundles: Path, tmp_path: Path) -> None:
    base = ["--input", str(many_bundles), "--num_shards", "3"]
    run([*base, "--output", str(tmp_path / "one")])
    run(
        [
            *base,
            "--output",
            str(tmp_path / "two"),
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_processing",
        ]
    )
    run([*base, "--output", str(tmp_path / "again")])
    one = _outputs(tmp_path / "one")
    assert len([n for n in one if n.endswith(".tar")]) == 3
    assert len([n for n in one if n.startswith("index/")]) == 3
    assert _outputs(tmp_path / "two") == one
    assert _outputs(tmp_path / "again") == one


@pytest.fixture(scope="module")
def long_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 2.5-minute conversations: long enough that a kill lands while parts are being written."""
    root = tmp_path_factory.mktemp("long")
    for i in range(12):
        make_bundle(root / f"l{i:02d}", conv_id=f"l{i:02d}", seconds=150.0 + i)
    return root


def test_killed_job_resumes_to_identical_output(long_bundles: Path, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "microturn_cli", "run", "--input", str(long_bundles), "--num_shards", "3"]
    ref = subprocess.run([*base, "--output", str(tmp_path / "ref")], capture_output=True, timeout=300)
    assert ref.returncode == 0
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*base, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list(out.glob("_work/*/parts/*.tar.json"))) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in out.glob("_work/*/parts/*.tar.json"))
    assert 3 <= len(finished) < 12, finished
    assert not (out / "manifest.json").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("_work/*/parts/*.tar")}
    rerun = subprocess.run([*base, "--output", str(out), "--keep_work"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resumed {len(finished)} finished conversation(s)" in rerun.stderr
    for p, t in mtimes.items():
        assert p.stat().st_mtime_ns == t  # finished parts were not redone
    shutil.rmtree(out / "_work")
    assert _outputs(out) == _outputs(tmp_path / "ref")


def test_tags_reach_the_index_and_annotations_the_samples(tmp_path: Path) -> None:
    b = make_bundle(tmp_path / "in" / "t", conv_id="t", seconds=2.0)
    obj = json.loads((b / "bundle.json").read_text())
    obj["tags"] = {"category": "placeholder-weapons", "layout": "plain", "is_refusal": "true"}
    obj["annotations"] = [{"label": "refusal", "speaker": "B", "start": 1.45, "end": 1.8}]
    (b / "bundle.json").write_text(json.dumps(obj))
    run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--window_microturns", "5"])
    rows = pq.read_table(tmp_path / "out" / "index").to_pylist()
    assert all(dict(r["tags"]) == obj["tags"] for r in rows)
    assert sorted((r["perspective"], r["window"], r["annotations"]) for r in rows) == [
        ("A", 0, []),
        ("A", 1, ["refusal"]),
        ("B", 0, []),
        ("B", 1, ["refusal"]),
    ]
    spans = {
        s["meta.json"]["perspective"]: s["annotations.json"]
        for s in iter_samples(str(tmp_path / "out"))
        if s["meta.json"]["window"] == 1
    }
    assert spans["B"] == [
        {
            "label": "refusal",
            "stream": "output",
            "speaker": "B",
            "start_microturn": 2,
            "end_microturn": 4,
            "start_s": 0.45,
            "end_s": 0.8,
        }
    ]
    assert spans["A"][0]["stream"] == "input"
