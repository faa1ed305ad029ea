"""Gander JSONL read by the job itself (issue 20.4): pieces of the user's and the assistant's files placed at
conversation times become samples with the turns' words and labels; every other line ends in rejected.parquet with
its reason (no assistant speech_out, malformed line, bad times, missing file, repeated id).

PYTHONPATH=. python -m pytest -q tests/pipeline/inputs/test_gander.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.decode import decode_conversation
from pipeline.job import run
from pipeline.read import InputRef, load_conversation
from schemas.bundle import BundleError, Piece
from schemas.reader import iter_samples
from schemas.sample import LABEL_BITS
from schemas.tables import read_rejected

from ...factories import gander_turn as turn
from ...factories import tone
from ...s3_server import S3Server

USER_RATE, AGENT_RATE = 24_000, 16_000


def _good(conv_id: str = "g1") -> dict:
    """User speech cut from one 24 kHz recording at 0-1 s and 2.8-3.6 s, the assistant's 16 kHz file at 1.4-2.4 s."""
    return {
        "id": conv_id,
        "turns": [
            turn(
                "user",
                0,
                1000,
                text="hello there",
                audio_in={"path": "audio/user.wav", "start_ms": 500, "end_ms": 1500},
            ),
            turn(
                "assistant",
                1400,
                2400,
                text="sure one moment",
                speech_out={"path": "audio/assistant.wav", "sample_rate": AGENT_RATE},
                tool_calls=[{"name": "task_start", "arguments": {"name": "look it up"}}],
            ),
            turn("tool", 2600, 2600, tool_response={"type": "worker_delivery", "topic": "final", "content": "done"}),
            turn(
                "user",
                2800,
                3600,
                text="thanks",
                audio_in={"path": "audio/user.wav", "start_ms": 2000, "end_ms": 2800},
                meta={"word_timestamps": [{"word": "thanks", "start_ms": 2850, "end_ms": 3500}]},
            ),
        ],
    }


@pytest.fixture
def gander_file(tmp_path: Path) -> Path:
    """conversations.jsonl beside audio/: one good line and one line of each way to fail."""
    root = tmp_path / "g"
    (root / "audio").mkdir(parents=True)
    user = np.zeros(3 * USER_RATE, np.float32)
    user[USER_RATE // 2 : 3 * USER_RATE // 2] = tone(1.0, rate=USER_RATE)
    user[2 * USER_RATE : 2 * USER_RATE + 8 * USER_RATE // 10] = tone(0.8, rate=USER_RATE, freq=300)
    sf.write(root / "audio" / "user.wav", user, USER_RATE, subtype="PCM_16")
    sf.write(root / "audio" / "assistant.wav", tone(1.0, freq=500), AGENT_RATE, subtype="PCM_16")
    no_speech = _good("no-speech")
    del no_speech["turns"][1]["speech_out"]
    missing = _good("missing")
    missing["turns"][3]["audio_in"]["path"] = "audio/nowhere.wav"
    bad_time = _good("bad-time")
    bad_time["turns"][1]["end_ms"] = 5e14
    lines = [json.dumps(_good()), json.dumps(no_speech), "{oops", json.dumps(missing), json.dumps(bad_time)]
    path = root / "conversations.jsonl"
    path.write_text("\n".join([*lines, json.dumps(_good())]) + "\n", encoding="utf-8")
    return path


def test_gander_line_is_a_conversation_of_placed_pieces(gander_file: Path) -> None:
    ref = InputRef(
        kind="manifest_line", origin=f"{gander_file}:1", path=str(gander_file), line=1, text=json.dumps(_good())
    )
    conv = load_conversation(ref)
    user, agent = conv.tracks
    audio = str(gander_file.parent / "audio")
    assert user.pieces == (
        Piece(path=f"{audio}/user.wav", at_s=0.0, start_s=0.5, end_s=1.5),
        Piece(path=f"{audio}/user.wav", at_s=2.8, start_s=2.0, end_s=2.8),
    )
    assert agent.pieces == (Piece(path=f"{audio}/assistant.wav", at_s=1.4),)
    assert user.duration_s == agent.duration_s == 3.6 and conv.model_speakers == ("assistant",)
    assert [e.kind for e in conv.events] == ["task_start", "worker_delivery"]

    decoded = decode_conversation(conv)
    assert decoded.num_samples == round(3.6 * 16_000)
    rms = {
        s: [float(np.sqrt(np.mean(x[a * 1600 : (a + 1) * 1600] ** 2))) for a in range(36)]
        for s, x in decoded.streams.items()
    }
    speaking = {s: [i for i, r in enumerate(v) if r > 0.05] for s, v in rms.items()}
    assert speaking["user"] == [*range(0, 10), *range(28, 36)]  # 100 ms steps: 0-1 s and 2.8-3.6 s
    assert speaking["assistant"] == list(range(14, 24))  # 1.4-2.4 s


@pytest.mark.parametrize(
    ("turn_index", "key", "kind", "words"),
    [
        (1, "speech_out", "gander_needs_speech", "assistant turn #1 (at 1400 ms) has text but no speech_out"),
        (0, "audio_in", "gander_no_user_audio", "user turn #0 (at 0 ms) has no audio_in"),
        (2, "start_ms", "gander_bad_conversation", "turn #2 start_ms is not a finite number"),
    ],
)
def test_a_line_the_job_cannot_use_is_rejected_with_its_reason(
    gander_file: Path, turn_index: int, key: str, kind: str, words: str
) -> None:
    line = _good()
    if key == "start_ms":
        line["turns"][turn_index][key] = "soon"
    else:
        del line["turns"][turn_index][key]
    ref = InputRef(kind="manifest_line", origin="c.jsonl:2", path=str(gander_file), line=2, text=json.dumps(line))
    with pytest.raises(BundleError) as e:
        load_conversation(ref)
    assert e.value.kind == kind and words in str(e.value)
    if kind == "gander_needs_speech":
        assert "microturn import gander FILE.jsonl --out BUNDLES" in str(e.value)


def test_job_reads_gander_jsonl_and_rejects_each_bad_line(gander_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = run(["--input", str(gander_file), "--output", str(out)])
    assert (manifest["counts"]["conversations_written"], manifest["counts"]["rejected"]) == (1, 5)
    rejected = {r["input"].rsplit(":", 1)[1]: r for r in read_rejected(str(out)).to_pylist()}
    assert {line: r["kind"] for line, r in rejected.items()} == {
        "2": "gander_needs_speech",
        "3": "malformed_json",
        "4": "missing_file",
        "5": "gander_bad_conversation",
        "6": "duplicate_id",
    }
    assert "microturn import gander" in rejected["2"]["reason"]
    assert "nowhere.wav" in rejected["4"]["reason"] and "turn #1 end_ms" in rejected["5"]["reason"]

    (sample,) = iter_samples(str(out))
    meta = sample["meta.json"]
    assert meta["conversation_id"] == "g1" and meta["speakers"]["output"] == "assistant"
    words = [(w["text"], w["stream"]) for w in sample["words.json"]]
    assert words == [
        ("hello", "input"),
        ("there", "input"),
        ("sure", "output"),
        ("one", "output"),
        ("moment", "output"),
        ("thanks", "input"),
    ]
    labels = sample["labels.npy"][: meta["num_microturns"]]
    speaks = lambda name: [int(i) for i in np.nonzero(labels & LABEL_BITS[name])[0]]  # noqa: E731
    assert meta["num_microturns"] == 18
    assert speaks("output_speech") == list(range(7, 12))  # 1.4-2.4 s
    assert speaks("input_speech") == [*range(0, 5), *range(14, 18)]  # 0-1 s and 2.8-3.6 s


@pytest.mark.parametrize("input_on_s3", [False, True])
def test_gander_jsonl_into_an_s3_output(
    gander_file: Path, tmp_path: Path, s3_server: S3Server, input_on_s3: bool
) -> None:
    """Issue 23.5: Gander input with an s3:// output (from a local file, and from the store itself) writes the same
    dataset there as a local run, rejected lines included, and creates nothing locally (before: a local directory
    literally named "s3:/bucket/..." and exit 2)."""
    local = run(["--input", str(gander_file), "--output", str(tmp_path / "local")])
    prefix = f"gander-{int(input_on_s3)}"
    source = s3_server.upload_tree(gander_file.parent, f"{prefix}/in") + "/conversations.jsonl" if input_on_s3 else None
    out = f"s3://{s3_server.bucket}/{prefix}/out"
    cwd = Path.cwd()
    try:
        os.chdir(tmp_path)
        remote = run(["--input", source or str(gander_file), "--output", out, *s3_server.beam_args()])
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "s3:").exists() and not list(tmp_path.glob("s3*"))
    assert remote["counts"] == local["counts"]
    assert (remote["counts"]["conversations_written"], remote["counts"]["rejected"]) == (1, 5)
    files = s3_server.download_tree(f"{prefix}/out")
    local_shards = sorted(p.name for p in (tmp_path / "local").glob("*.tar"))
    assert local_shards and all(files[name] == (tmp_path / "local" / name).read_bytes() for name in local_shards)
    remote_rejected = pq.read_table(pa.BufferReader(files["rejected.parquet"])).to_pylist()
    kinds = sorted(r["kind"] for r in read_rejected(str(tmp_path / "local")).to_pylist())
    assert sorted(r["kind"] for r in remote_rejected) == kinds
