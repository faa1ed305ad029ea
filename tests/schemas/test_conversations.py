"""iter_conversations joins a dataset's windows back into whole conversations: a tiny generated dataset (3.1 s, so
the last micro-turn is partial, cut into 4-micro-turn windows with --keep_audio) read back per conversation and
perspective equals the streams it was made from: audio, dMel codes, words and events on the conversation clock.

    PYTHONPATH=. python -m pytest -q tests/schemas/test_conversations.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.job import run
from schemas.bundle import Word
from schemas.checked_reader import iter_conversations
from schemas.dmel import dmel_codes
from schemas.grid import word_microturn
from schemas.reader import iter_samples, join_windows
from schemas.units import SAMPLES_PER_MICROTURN
from tests.factories import make_bundle

SECONDS = 3.1  # 49,600 samples: 16 micro-turns (the last one half full), windows of 4
EVENT = {"kind": "tool_response", "time_s": 2.3, "name": "search", "content": "found it"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("conversations")
    for conv_id in ("two", "one"):
        bundle = make_bundle(root / "in" / conv_id, conv_id=conv_id, seconds=SECONDS)
        obj = json.loads((bundle / "bundle.json").read_text())
        obj["events"] = [EVENT]
        (bundle / "bundle.json").write_text(json.dumps(obj))
    run(["--input", str(root / "in"), "--output", str(root / "out"), "--window_microturns", "4", "--keep_audio"])
    return root / "in", root / "out"


def test_one_joined_conversation_per_conversation_and_perspective_in_order(dataset) -> None:
    _, out = dataset
    joined = list(iter_conversations(str(out)))
    assert [(c["meta.json"]["conversation_id"], c["meta.json"]["perspective"]) for c in joined] == [
        ("one", "A"),
        ("one", "B"),
        ("two", "A"),
        ("two", "B"),
    ]
    only = list(iter_conversations(str(out), checked=False, conversation_ids={"two"}))
    assert [c["meta.json"]["conversation_id"] for c in only] == ["two", "two"]


def test_joined_conversation_equals_the_original_streams(dataset) -> None:
    inputs, out = dataset
    total = round(SECONDS * 16_000)
    k = math.ceil(total / SAMPLES_PER_MICROTURN)
    for conv in iter_conversations(str(out)):
        meta = conv["meta.json"]
        assert meta["conversation_samples"] == total and meta["window"] == 0
        np.testing.assert_array_equal(conv["mask.npy"], np.ones(k, np.uint8))
        for stream in ("input", "output"):
            speaker = meta["speakers"][stream]
            original, rate = sf.read(inputs / meta["conversation_id"] / f"{speaker}.wav", dtype="float32")
            assert rate == 16_000 and len(original) == total
            pcm = conv[f"{stream}.flac"]
            assert pcm.shape == (k * SAMPLES_PER_MICROTURN,) and not pcm[total:].any()  # whole micro-turns
            np.testing.assert_allclose(pcm[:total], original, atol=1 / 32768)  # 16-bit FLAC
            codes = dmel_codes(original).reshape(-1, 16, 80)
            assert conv[f"{stream}.dmel.npy"].shape == (k, 16, 80)
            np.testing.assert_array_equal(conv[f"{stream}.dmel.npy"], codes[:k])
        for member in ("activity.npy", "labels.npy", "floor.npy"):
            assert len(conv[member]) == k
        bundle = json.loads((inputs / meta["conversation_id"] / "bundle.json").read_text())
        got = sorted((w["text"], w["speaker"], w["start_s"], w["end_s"]) for w in conv["words.json"])
        want = sorted((w["text"], w["speaker"], w["start"], w["end"]) for w in bundle["words"])
        assert [g[:2] for g in got] == [w[:2] for w in want]
        np.testing.assert_allclose([g[2:] for g in got], [w[2:] for w in want], atol=1e-6)
        for w in bundle["words"]:  # each word's micro-turn is its placement on the conversation clock
            word = Word(text=w["text"], start_s=w["start"], end_s=w["end"], speaker=w["speaker"])
            is_output = w["speaker"] == meta["speakers"]["output"]
            placed = [x["microturn"] for x in conv["words.json"] if x["text"] == w["text"]]
            assert placed == [word_microturn(word, is_output=is_output, num_microturns=k)]
        if meta["perspective"] == "B":  # the event names no speaker: it is the first speaker's (A)
            assert conv["events.json"] == []
            continue
        (event,) = conv["events.json"]
        assert event["time_s"] == pytest.approx(EVENT["time_s"], abs=1e-6)
        assert event["microturn"] == int(EVENT["time_s"] / 0.2) == 11


def test_join_windows_takes_windows_in_any_order(dataset) -> None:
    _, out = dataset
    windows = [s for s in iter_samples(str(out)) if s["meta.json"]["key"].startswith("one_")]
    perspective_a = [s for s in windows if s["meta.json"]["perspective"] == "A"]
    assert len(perspective_a) == 4
    forward, backward = join_windows(perspective_a), join_windows(perspective_a[::-1])
    for member in ("input.dmel.npy", "labels.npy", "input.flac"):
        np.testing.assert_array_equal(forward[member], backward[member])
    assert forward["words.json"] == backward["words.json"]
    with pytest.raises(ValueError, match="at least one window"):
        join_windows([])
