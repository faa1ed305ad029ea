"""The sample record: to_members / from_members round trip, canonical bytes, and the problems from_members names.

.venv/bin/python -m pytest -q tests/schemas/test_sample.py
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from schemas.sample import (
    MicroTurnSample,
    SampleAnnotation,
    SampleMeta,
    SampleSpeakers,
    SampleVideo,
    SampleWord,
)
from schemas.shard import decode_json, encode_array

W = 3


def _record(*, video: bool = True, audio: bool = True) -> MicroTurnSample:
    rng = np.random.default_rng(0)
    meta = SampleMeta(
        format_version=1,
        key="c_A_00000",
        conversation_id="c",
        conversation_key="c",
        perspective="A",
        window=0,
        start_microturn=0,
        num_microturns=2,
        window_microturns=W,
        last_valid_samples=1600,
        conversation_samples=4800,
        speakers=SampleSpeakers(input="B", others=("C",), output="A"),
        streams=("input", "others", "output"),
        language="en",
        source="test",
        licence="CC0-1.0",
        split="train",
        word_sources={"human": 1},
        tags={"layout": "x"},
        video=SampleVideo(frames=1, audio_video_offset_s=0.25) if video else None,
    )
    dmel = {s: rng.integers(0, 16, (W, 16, 80), dtype=np.uint8) for s in ("input", "others", "output")}
    return MicroTurnSample(
        meta=meta,
        input_dmel=dmel["input"],
        output_dmel=dmel["output"],
        others_dmel=dmel["others"],
        activity=rng.random((W, 3), dtype=np.float32),
        labels=np.array([1, 3, 0], np.uint8),
        floor=np.array([1, 0, -1], np.int16),
        mask=np.array([1, 1, 0], np.uint8),
        words=(
            SampleWord(
                text="héllo",
                stream="input",
                speaker="B",
                start_s=-0.05,
                end_s=0.3,
                microturn=1,
                source="human",
                score=None,
            ),
        ),
        annotations=(
            SampleAnnotation(
                label="refusal",
                stream="output",
                speaker="A",
                start_microturn=0,
                end_microturn=2,
                start_s=0.0,
                end_s=0.4,
            ),
        ),
        frames=(None, b"\xff\xd8jpeg\xff\xd9", None) if video else None,
        audio={"input": (rng.standard_normal(W * 3200) * 0.1).astype(np.float32)} if audio else None,
    )


def test_round_trip_gives_equal_fields_and_equal_bytes() -> None:
    record = _record()
    members = record.to_members()
    assert list(members) == [
        "meta.json",
        "words.json",
        "annotations.json",
        "activity.npy",
        "labels.npy",
        "floor.npy",
        "mask.npy",
        "input.dmel.npy",
        "output.dmel.npy",
        "others.dmel.npy",
        "frames.mjpeg",
        "frames.index.npy",
        "input.flac",
    ]
    back = MicroTurnSample.from_members(members)
    assert back.meta == record.meta and back.words == record.words and back.annotations == record.annotations
    assert back.frames == record.frames
    for name, array in record.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], array, err_msg=name)
        assert back.arrays()[name].dtype == array.dtype
    np.testing.assert_allclose(back.audio["input"], record.audio["input"], atol=1 / 32768)  # 16-bit FLAC
    assert back.to_members() == members


def test_json_members_are_canonical() -> None:
    members = _record(video=False, audio=False).to_members()
    assert members["meta.json"].startswith(b'{"conversation_id":"c","conversation_key":"c","conversation_samples"')
    assert b" " not in members["meta.json"] and "héllo".encode() in members["words.json"]  # UTF-8, no escapes
    meta = decode_json(members["meta.json"])
    assert meta["speakers"] == {"input": "B", "others": ["C"], "output": "A"} and meta["video"] is None
    assert decode_json(members["words.json"]) == [
        {
            "text": "héllo",
            "stream": "input",
            "speaker": "B",
            "start_s": -0.05,
            "end_s": 0.3,
            "microturn": 1,
            "source": "human",
            "score": None,
        }
    ]
    assert "frames.mjpeg" not in members and not any(name.endswith(".flac") for name in members)


def test_from_members_names_every_problem() -> None:
    members = _record(video=False, audio=False).to_members()
    del members["floor.npy"]
    members["labels.npy"] = encode_array(np.zeros(W, np.int32))
    members["mask.npy"] = encode_array(np.ones(W + 1, np.uint8))
    members["extra.txt"] = b"?"
    with pytest.raises(ValueError) as e:
        MicroTurnSample.from_members(members)
    text = str(e.value)
    assert "missing member floor.npy" in text and "unknown member extra.txt" in text
    assert "labels.npy: dtype int32" in text and "mask.npy: dtype uint8 shape (4,)" in text


def test_meta_must_match_the_dmel_members_and_have_exactly_its_fields() -> None:
    record = _record(video=False, audio=False)
    no_others = dataclasses.replace(record, others_dmel=None)
    with pytest.raises(ValueError, match=r"meta.streams is \['input', 'others', 'output'\]"):
        MicroTurnSample.from_members(no_others.to_members())
    members = record.to_members()
    members["meta.json"] = members["meta.json"].replace(b'"split"', b'"splt"')
    with pytest.raises(ValueError, match=r"missing fields \['split'\], unknown fields \['splt'\]"):
        MicroTurnSample.from_members(members)
