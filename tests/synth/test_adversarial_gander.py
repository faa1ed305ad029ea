"""Issue 23.11, Gander import: one malformed line is one rejection with a reason, the other lines are imported (no
exit 2, no traceback); audio outside the Gander file's directory is never read; bad or huge times are refused
before any allocation; a repeated id is rejected the second time; the format sniffing survives a 0xFF byte, deep
nesting or a 5,000-digit number on the first line.

    PYTHONPATH=. python -m pytest -q tests/synth/test_adversarial_gander.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import microturn_cli
from schemas.gander import is_gander_file
from synth.gander_import import import_gander
from tests.factories import gander_turn as turn


def good(conv_id: str = "good") -> dict:
    return {
        "id": conv_id,
        "turns": [
            turn("user", 0, 1000, text="hello there", audio_in={"path": "u.wav", "start_ms": 0, "end_ms": 1000}),
            turn("assistant", 1200, 2000, text="hi", speech_out={"path": "a.wav"}),
        ],
    }


def with_turns(conv_id: str, *turns: object) -> dict:
    return {"id": conv_id, "turns": [good()["turns"][0], *turns]}


BAD = {  # name -> (line bytes, words of the reason)
    "not_json": (b"{not json", "not JSON"),
    "ff_byte": (b'{"id": "x\xff", "turns": []}', "not UTF-8"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "long_number": (b'{"id": ' + b"9" * 5000 + b', "turns": []}', "not usable JSON"),
    "not_gander": (json.dumps({"id": "b", "tracks": []}).encode(), "not a Gander conversation"),
    "turn_string": (json.dumps(with_turns("ts", "hello")).encode(), "turn #1 is not an object"),
    "call_without_name": (
        json.dumps(with_turns("cn", turn("assistant", 1000, 1500, text="x", tool_calls=[{"arguments": {}}]))).encode(),
        "has no 'name'",
    ),
    "call_bad_arguments": (
        json.dumps(
            with_turns("ca", turn("assistant", 1000, 1500, tool_calls=[{"name": "f", "arguments": "{x"}]))
        ).encode(),
        "arguments",
    ),
    "huge_end": (json.dumps(with_turns("he", turn("assistant", 1000, 5e14, text="x"))).encode(), "outside 0 .."),
    "nan_start": (b'{"id": "ns", "turns": [{"role": "user", "start_ms": NaN, "end_ms": 5}]}', "not a finite number"),
    "negative_start": (json.dumps(with_turns("neg", turn("assistant", -500, 100, text="x"))).encode(), "outside 0 .."),
    "reversed": (json.dumps(with_turns("rev", turn("assistant", 900, 100, text="x"))).encode(), "before it starts"),
    "string_time": (json.dumps(with_turns("st", turn("assistant", "soon", 100))).encode(), "not a finite number"),
    "huge_audio_cut": (
        json.dumps(
            with_turns("hc", turn("user", 0, 10, audio_in={"path": "u.wav", "start_ms": 0, "end_ms": 1e13}))
        ).encode(),
        "outside 0 ..",
    ),
    "bad_words": (
        json.dumps(
            with_turns("bw", turn("user", 0, 10, meta={"word_timestamps": [{"word": "a", "start_ms": "x"}]}))
        ).encode(),
        "word #0",
    ),
    "duplicate_id": (json.dumps(good()).encode(), "duplicate id 'good'"),
}


@pytest.fixture
def gander_dir(tmp_path: Path) -> Path:
    root = tmp_path / "g"
    root.mkdir()
    t = np.arange(32_000) / 16_000
    sf.write(root / "u.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    sf.write(root / "a.wav", (0.3 * np.sin(2 * np.pi * 330 * t[:12_800])).astype(np.float32), 16_000)
    sf.write(tmp_path / "secret.wav", np.full(16_000, 0.5, np.float32), 16_000)  # outside the Gander file's directory
    return root


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_each_bad_line_is_one_rejection_and_the_rest_is_imported(gander_dir: Path, tmp_path: Path) -> None:
    outside = with_turns("outside", turn("user", 1000, 2000, audio_in={"path": str(tmp_path / "secret.wav")}))
    dotdot = with_turns("dotdot", turn("user", 1000, 2000, audio_in={"path": "../secret.wav"}))
    lines = [json.dumps(good()).encode(), *(line for line, _ in BAD.values()), json.dumps(outside).encode()]
    lines.append(json.dumps(dotdot).encode())
    path = write_lines(gander_dir / "c.jsonl", lines)
    rejected: list[tuple[str, str]] = []
    written = import_gander(path, tmp_path / "bundles", rejected=rejected)
    assert sorted(p.parent.name for p in written) == ["dotdot", "good", "outside"]
    assert len(rejected) == len(BAD)
    for (origin, reason), (name, (_, words)) in zip(rejected, BAD.items(), strict=True):
        assert words in reason, (name, reason)
        assert origin.startswith(f"{path}:")
    assert not (tmp_path / "bundles" / "he").exists() and not (tmp_path / "bundles" / "hc").exists()
    for name in ("outside", "dotdot"):  # the outside file is named in the track (the job rejects it), never read
        bundle = json.loads((tmp_path / "bundles" / name / "bundle.json").read_text())
        (user,) = [t for t in bundle["tracks"] if t["speaker"] == "user"]
        assert Path(user["path"]).resolve() == (tmp_path / "secret.wav").resolve()
        assert not (tmp_path / "bundles" / name / "user.wav").exists()


@pytest.mark.parametrize("first", [b"\xff\xfe\x00", b"[" * 100_000, b"[" + b"9" * 5000 + b"]", b"{oops"])
def test_sniffing_survives_a_bad_first_line(first: bytes, gander_dir: Path) -> None:
    gander = write_lines(gander_dir / "g.jsonl", [first, json.dumps(good()).encode()])
    assert is_gander_file(gander)
    bundles = write_lines(gander_dir / "b.jsonl", [first, json.dumps({"id": "b", "tracks": []}).encode()])
    assert not is_gander_file(bundles)


def test_run_reads_the_good_lines_and_rejects_each_bad_one(
    gander_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The same lines given to the job itself (pipeline/inputs/gander.py): each bad one is a row of
    rejected.parquet with its reason, the good one is written."""
    outside = with_turns("outside", turn("user", 1000, 2000, audio_in={"path": "../secret.wav"}))
    lines = [BAD["ff_byte"][0], json.dumps(good()).encode(), BAD["turn_string"][0], json.dumps(outside).encode()]
    path = write_lines(gander_dir / "c.jsonl", lines)
    dataset = tmp_path / "dataset"
    assert microturn_cli.main(["run", "--input", str(path), "--output", str(dataset)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    rejected = pq.read_table(dataset / "rejected.parquet").to_pylist()
    assert [(r["input"].rsplit(":", 1)[1], r["kind"]) for r in rejected] == [
        ("1", "not_utf_text"),
        ("3", "gander_bad_conversation"),
        ("4", "path_outside_input"),
    ]
    assert "turn #1 is not an object" in rejected[1]["reason"] and "secret.wav" in rejected[2]["reason"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["counts"]["conversations_written"] == 1
