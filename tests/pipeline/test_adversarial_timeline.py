"""Issue 23.11, targets and events: nothing of a bundle is dropped silently. A target due after the audio ends, an
event or a target naming a speaker the conversation does not have, and ``"model_speakers": ["Z"]`` are rejections
with a kind and a reason (pipeline.event_windows.check_timeline, in the label stage), never "written with 0
targets / 0 samples"; an event whose content is NaN never reaches events.json (not standard JSON).

    PYTHONPATH=. python -m pytest -q tests/pipeline/test_adversarial_timeline.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.job import run
from schemas.shard import encode_json
from schemas.tables import read_rejected
from tests.factories import make_bundle

TARGET = {
    "id": "t0",
    "family": "timed",
    "category": "timed_oneshot",
    "text": "now",
    "due": 1.0,
    "start": 0.8,
    "end": 1.6,
}
EVENT = {"kind": "tool_response", "time_s": 1.0, "name": "search", "content": "found it"}

CASES = {  # bundle changes -> (kind, words of the reason)
    "target_past_end": (
        {"targets": [{**TARGET, "due": 9.0, "start": 8.8, "end": 9.6}]},
        "bad_target",
        "after the audio",
    ),
    "target_unknown_speaker": ({"targets": [{**TARGET, "speaker": "Z"}]}, "bad_target", "names speaker 'Z'"),
    "event_unknown_speaker": ({"events": [{**EVENT, "speaker": "Z"}]}, "bad_event", "names speaker 'Z'"),
    "event_nan_content": ({"events": [{**EVENT, "content": math.nan}]}, "bad_event", "standard JSON"),
    "event_nan_argument": (
        {"events": [{"kind": "tool_call", "time_s": 1.0, "name": "f", "arguments": {"x": math.inf}}]},
        "bad_event",
        "standard JSON",
    ),
    "model_speakers_unknown": ({"model_speakers": ["Z"]}, "bad_model_speakers", "names none of the speakers"),
}


def bundle(root: Path, name: str, changes: dict) -> Path:
    directory = make_bundle(root / name, conv_id=name)
    obj = json.loads((directory / "bundle.json").read_text())
    obj.update(changes)
    (directory / "bundle.json").write_text(json.dumps(obj))  # NaN / Infinity as Python's json writes them
    return directory


def test_each_is_rejected_with_kind_and_reason(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name, (changes, _, _) in CASES.items():
        bundle(root, name.replace("_", "-"), changes)
    bundle(root, "good", {"targets": [TARGET], "events": [EVENT]})
    manifest = run(["--input", str(root), "--output", str(tmp_path / "out")])
    rejected = {Path(r["input"]).parent.name: r for r in read_rejected(str(tmp_path / "out")).to_pylist()}
    for name, (_, kind, words) in CASES.items():
        r = rejected.get(name.replace("_", "-"))
        assert r is not None, (name, sorted(rejected))
        assert r["kind"] == kind and words in r["reason"], r
    assert manifest["counts"]["conversations_written"] == 1 and "good" not in rejected
    for shard in (tmp_path / "out").glob("shard-*.tar"):
        assert b"NaN" not in shard.read_bytes() and b"Infinity" not in shard.read_bytes()


def test_members_are_standard_json() -> None:
    with pytest.raises(ValueError):
        encode_json({"content": math.nan})
    assert encode_json({"b": 1.5, "a": None}) == b'{"a":null,"b":1.5}'
