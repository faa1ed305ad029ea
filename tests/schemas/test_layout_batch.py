"""`PackedBatch` (the loader's in-place packing) against `pack` (the reference): equal arrays, every field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from schemas.layout import LayoutSpec, Packed, PackedBatch, output_logmel_rows, pack, prepare

W = 10
SPEC = LayoutSpec(frame_patches=6, text_slots=8, event_slots=5)


def _event(kind: str, side: str, k: int, name: str, **kw) -> dict:
    base = {"kind": kind, "side": side, "microturn": k, "time_s": 0.2 * k + 0.05, "name": name, "arguments": None}
    base.update(content=None, task=None, topic=None, status=None, target=side == "output")
    base.update(kw)
    return base


def _word(text: str, stream: str, k: int, start_s: float) -> dict:
    return {"text": text, "stream": stream, "microturn": k, "start_s": start_s, "end_s": start_s + 0.1}


def make_sample(seed: int = 0, mask: np.ndarray | None = None) -> dict:
    """A decoded sample with every channel: user, model and others dMel, words of all three streams (some too long
    for a micro-turn, some outside the window), events of both sides (spilling, one past the last real
    micro-turn), and video frames (80x120: 6 patches) with a gap."""
    rng = np.random.default_rng(seed)
    if mask is None:
        mask = np.ones(W, np.uint8)
        mask[-2:] = 0
    vocab = ("hi", "yes", "no", "straßenbahn", "okay", "a", "extraordinarily")
    words = [
        _word(vocab[int(rng.integers(len(vocab)))], str(rng.choice(["input", "output", "others"])), k, float(t))
        for k in range(-1, W + 2)
        for t in rng.random(int(rng.integers(0, 4)))
    ]
    events = [
        _event("task_start", "output", 1, "task_start", arguments={"name": "convert 20 EUR to USD"}, task="x"),
        _event("worker_delivery", "input", 2, "convert", content="21.60 USD", topic="final", status="done"),
        _event("tool_call", "output", W - 3, "lookup", arguments={"q": "a long query that cannot fit"}),
    ]
    return {
        "mask.npy": np.asarray(mask, np.uint8),
        "input.dmel.npy": rng.integers(0, 16, (W, 16, 80), dtype=np.uint8),
        "output.dmel.npy": rng.integers(0, 16, (W, 16, 80), dtype=np.uint8),
        "others.dmel.npy": rng.integers(0, 16, (W, 16, 80), dtype=np.uint8),
        "words.json": words,
        "events.json": events,
        "frames": rng.integers(0, 256, (W, 80, 120, 3), dtype=np.uint8),
        "frame_mask": (np.arange(W) != 3).astype(np.uint8),
    }


def reference(sample: dict, spec: LayoutSpec, first: int, count: int, logmel: np.ndarray | None) -> Packed:
    frames = sample.get("frames")
    return pack(
        sample,
        spec,
        first=first,
        count=count,
        frames=frames,
        frame_valid=None if frames is None else sample["frame_mask"].astype(bool),
        output_logmel=logmel,
    )


def packed_batch(sample: dict, spec: LayoutSpec, firsts: list[int], count: int, size: int, logmel) -> dict:
    frames = sample.get("frames")
    prepared = prepare(
        sample,
        spec,
        frames=frames,
        frame_valid=None if frames is None else sample["frame_mask"].astype(bool),
        output_logmel=logmel,
    )
    batch = PackedBatch(spec, count, size)
    for row, first in enumerate(firsts):
        batch.put(row, prepared, first=first)
    return batch.arrays()


def assert_batch_equals_stack(got: dict, examples: list[Packed]) -> None:
    """Every field equals the stacked `pack` results; logmel the stacked OUT_DMEL rows (output_logmel_rows)."""
    names = [f.name for f in dataclasses.fields(Packed)]
    assert list(got) == names
    for name in names:
        values = [output_logmel_rows(e) if name == "logmel" else getattr(e, name) for e in examples]
        if name in ("text_bytes_cut", "event_bytes_cut"):
            assert got[name] == sum(values), name
        else:
            want = np.stack(values)
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
            np.testing.assert_array_equal(got[name], want, err_msg=name)


EMPTY = {"mask.npy": np.zeros(1, np.uint8), "input.dmel.npy": np.zeros((1, 16, 80), np.uint8)}
EMPTY["output.dmel.npy"] = EMPTY["input.dmel.npy"]


@pytest.mark.parametrize("with_logmel", [False, True])
@pytest.mark.parametrize("user_text", ["heard", "none"])
@pytest.mark.parametrize("count", [1, 4, 13])
def test_packed_batch_equals_stacked_pack(with_logmel, user_text, count) -> None:
    spec = dataclasses.replace(SPEC, user_text=user_text)
    sample = make_sample(seed=count)
    logmel = np.random.default_rng(1).normal(size=(W, 16, 80)).astype(np.float32) if with_logmel else None
    firsts = [0, count, 2 * count, -2, W - 1, W + 3]  # in the window, across its end, before and past it
    size = len(firsts) + 2  # two rows left empty: the padding of a last batch
    got = packed_batch(sample, spec, firsts, count, size, logmel)
    want = [reference(sample, spec, f, count, logmel) for f in firsts]
    want += [pack(EMPTY, spec, first=0, count=count)] * 2
    assert_batch_equals_stack(got, want)
    # the sample exercises every channel: valid patches, others, event bytes, cut words and cut events
    if count > 1:
        assert got["patch_valid"].any() and got["has_others"].any() and got["event"].any()
        assert got["text_bytes_cut"] > 0 and (got["text"] < 256).any()


@pytest.mark.parametrize("mask", [[1, 0, 1, 1, 0, 1, 1, 1, 0, 0], [0] * W, [1] * W])
def test_packed_batch_equals_pack_with_holes_and_without_others_or_frames(mask) -> None:
    sample = make_sample(seed=5, mask=np.array(mask))
    for drop in ((), ("others.dmel.npy",), ("others.dmel.npy", "frames", "frame_mask")):
        s = {k: v for k, v in sample.items() if k not in drop}
        got = packed_batch(s, SPEC, [0, 5], 5, 3, None)
        want = [reference(s, SPEC, f, 5, None) for f in (0, 5)] + [pack(EMPTY, SPEC, first=0, count=5)]
        assert_batch_equals_stack(got, want)


def test_zero_fields_take_no_memory_without_others_or_frames() -> None:
    sample = {k: v for k, v in make_sample().items() if k not in ("others.dmel.npy", "frames", "frame_mask")}
    got = packed_batch(sample, SPEC, [0], 4, 2, None)
    assert got["others_dmel"].strides == (0, 0, 0) and got["patches"].strides == (0,) * 5


def test_events_with_no_room_are_counted_as_cut() -> None:
    spec = LayoutSpec(frame_patches=0, text_slots=2, event_slots=2)  # budget 1: no room for a marker and a byte
    sample = make_sample(seed=2)
    got = packed_batch(sample, spec, [0, 4], 4, 2, None)
    assert_batch_equals_stack(got, [reference(sample, spec, f, 4, None) for f in (0, 4)])
    assert got["event_bytes_cut"] > 0


def test_bad_codes_frames_and_reuse_fail_clearly() -> None:
    sample = make_sample()
    bad = {**sample, "output.dmel.npy": sample["output.dmel.npy"] + 16}
    with pytest.raises(ValueError, match="0..15"):
        prepare(bad, SPEC)
    with pytest.raises(ValueError, match="frame_patches"):
        packed_batch(sample, dataclasses.replace(SPEC, frame_patches=4), [0], 4, 1, None)
    batch = PackedBatch(SPEC, 4, 1)
    prepared = prepare(sample, SPEC)
    batch.put(0, prepared, first=0)
    with pytest.raises(ValueError, match="written already"):
        batch.put(0, prepared, first=0)
    with pytest.raises(ValueError, match="prepared for"):
        PackedBatch(dataclasses.replace(SPEC, text_slots=4), 4, 1).put(0, prepared, first=0)
