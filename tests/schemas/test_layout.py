"""The §6 token layout: slot order and counts, masks, text bytes, patches, dequantisation."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.layout import (
    CHUNK,
    IN_DMEL,
    IN_TEXT,
    OUT_DMEL,
    OUT_TEXT,
    PATCH,
    SPEAK,
    TEXT_END,
    TEXT_PAD,
    LayoutSpec,
    dequantise_dmel,
    microturn_slots,
    pack,
    patchify,
)


def make_sample(window: int = 6, real: int = 4, words: list[dict] | None = None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.zeros(window, np.uint8)
    mask[:real] = 1
    return {
        "input.dmel.npy": rng.integers(0, 16, (window, 16, 80), dtype=np.uint8),
        "output.dmel.npy": rng.integers(0, 16, (window, 16, 80), dtype=np.uint8),
        "mask.npy": mask,
        "words.json": words or [],
    }


def word(text: str, stream: str, microturn: int, start_s: float = 0.0) -> dict:
    return {
        "text": text,
        "stream": stream,
        "microturn": microturn,
        "start_s": start_s,
        "end_s": start_s + 0.1,
        "speaker": "A",
        "source": "tts",
        "score": None,
    }


def test_slot_order_and_count():
    spec = LayoutSpec(frame_patches=48, text_slots=16)
    slots = microturn_slots(spec)
    assert len(slots) == spec.slots_per_microturn == 2 + 32 + 48 + 32
    # [chunk] user dMel . frame patches . user text | [speak] model text . model dMel, in runs
    runs = [int(k) for i, k in enumerate(slots) if i == 0 or slots[i - 1] != k]
    assert runs == [CHUNK, IN_DMEL, PATCH, IN_TEXT, SPEAK, OUT_TEXT, OUT_DMEL]
    assert [(slots == k).sum() for k in (CHUNK, IN_DMEL, PATCH, IN_TEXT, SPEAK, OUT_TEXT, OUT_DMEL)] == [
        1,
        16,
        48,
        16,
        1,
        16,
        16,
    ]
    assert len(microturn_slots(LayoutSpec(frame_patches=0, text_slots=1))) == 2 + 32 + 0 + 2


def test_bad_spec_fails_early():
    with pytest.raises(ValueError, match="text_slots"):
        LayoutSpec(text_slots=0)


def test_pack_shapes_static_and_masks():
    spec = LayoutSpec(frame_patches=4, text_slots=6)
    words = [
        word("hi", "input", 0),
        word("yes", "output", 1, 0.3),
        word("no", "output", 1, 0.25),
        word("abcdefghij", "output", 2),
        word("late", "output", 5),
    ]
    sample = make_sample(window=6, real=4, words=words)
    p = pack(sample, spec, first=0, count=6)
    per = spec.slots_per_microturn
    n = 6 * per
    assert p.kind.shape == p.text.shape == p.attendable.shape == p.target_text.shape == (n,)
    assert p.dmel.shape == p.logmel.shape == (n, 80)
    assert p.patches.shape == (6 * 4, 3, 40, 40) and not p.patch_valid.any()
    text = p.text.reshape(6, per)
    slots = microturn_slots(spec)
    out_cols, in_cols = np.flatnonzero(slots == OUT_TEXT), np.flatnonzero(slots == IN_TEXT)
    assert list(text[0, in_cols]) == [*b"hi", TEXT_END, TEXT_PAD, TEXT_PAD, TEXT_PAD]
    assert list(text[0, out_cols]) == [TEXT_END] + [TEXT_PAD] * 5  # no words: END is still a target
    assert bytes(text[1, out_cols[:5]].astype(np.uint8)) == b"no ye"  # ordered by start time, then cut
    assert list(text[2, out_cols]) == [*b"abcde", TEXT_END]  # cut to text_slots - 1 bytes
    assert p.text_bytes_cut == len("no yes") - 5 + len("abcdefghij") - 5
    assert (text[4:] == TEXT_PAD).all()  # padding micro-turns hold nothing, even with a word placed there
    att = p.attendable.reshape(6, per)
    assert att[:4, slots == CHUNK].all() and not att[4:].any()
    assert not att[:, slots == PATCH].any()
    tt, td = p.target_text.reshape(6, per), p.target_dmel.reshape(6, per)
    assert tt[0].sum() == 1 and tt[1].sum() == 6 and tt[2].sum() == 6
    assert td[:4, slots == OUT_DMEL].all() and not td[:, slots != OUT_DMEL].any() and not td[4:].any()
    dmel = p.dmel.reshape(6, per, 80)
    np.testing.assert_array_equal(dmel[2, slots == IN_DMEL], sample["input.dmel.npy"][2])
    np.testing.assert_array_equal(dmel[3, slots == OUT_DMEL], sample["output.dmel.npy"][3])
    np.testing.assert_allclose(
        p.logmel.reshape(6, per, 80)[1, slots == OUT_DMEL], -7.0 + 0.6 * sample["output.dmel.npy"][1], atol=1e-5
    )


def test_pack_span_past_the_window_is_padding():
    spec = LayoutSpec(frame_patches=0, text_slots=2)
    p = pack(make_sample(window=5, real=5), spec, first=4, count=3)
    att = p.attendable.reshape(3, -1)
    assert att[0].any() and not att[1:].any()
    assert p.microturn.max() == 2


def test_frames_become_patches():
    spec = LayoutSpec(frame_patches=6, text_slots=2)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 80, 120, 3), dtype=np.uint8)
    valid = np.array([False, True, True, True])
    p = pack(make_sample(window=4, real=3), spec, first=0, count=4, frames=frames, frame_valid=valid)
    assert list(p.patch_valid.reshape(4, 6).all(1)) == [False, True, True, False]
    np.testing.assert_array_equal(p.patches[6 + 4], frames[1, 40:80, 40:80].transpose(2, 0, 1))
    slots = microturn_slots(spec)
    assert p.attendable.reshape(4, -1)[1, slots == PATCH].all()
    with pytest.raises(ValueError, match="frame_patches"):
        pack(make_sample(window=4), LayoutSpec(frame_patches=48), first=0, count=2, frames=frames)


def test_patchify_row_major():
    frame = np.arange(80 * 120 * 3, dtype=np.uint32).reshape(80, 120, 3).astype(np.uint8)
    p = patchify(frame)
    assert p.shape == (6, 3, 40, 40)
    np.testing.assert_array_equal(p[2], frame[0:40, 80:120].transpose(2, 0, 1))
    with pytest.raises(ValueError):
        patchify(np.zeros((50, 40, 3), np.uint8))


def test_dequantise_agrees_with_pipeline_levels():
    from schemas.dmel import LEVELS

    codes = np.arange(16, dtype=np.uint8)
    np.testing.assert_array_equal(dequantise_dmel(codes), LEVELS)
    np.testing.assert_allclose(dequantise_dmel(codes), -7.0 + 0.6 * codes, atol=1e-6)
    with pytest.raises(ValueError):
        dequantise_dmel(np.array([16]))


def test_user_text_none_feeds_no_user_word_byte() -> None:
    """`user_text="none"` (audio and video only): no IN_TEXT slot carries a word byte of the user or others; every
    real micro-turn still has its END; the model side and its loss targets are as with `heard`; an input-side event
    (an arrival, not speech) still travels in IN_TEXT."""
    words = [word("hello", "input", 0), word("hi", "others", 1), word("yes", "output", 1), word("there", "input", 2)]
    heard = pack(make_sample(words=words), LayoutSpec(frame_patches=0, text_slots=8), first=0, count=6)
    none = pack(make_sample(words=words), LayoutSpec(frame_patches=0, text_slots=8, user_text="none"), first=0, count=6)
    assert (heard.text[heard.kind == IN_TEXT] < 256).any()
    in_text = none.text[none.kind == IN_TEXT].reshape(6, 8)
    assert not (in_text < 256).any()
    assert (in_text[:4, 0] == TEXT_END).all() and (in_text[4:] == TEXT_PAD).all()  # 4 real micro-turns
    for name in ("text", "target_text", "target_dmel", "dmel"):
        out = heard.kind == OUT_TEXT if name in ("text", "target_text") else slice(None)
        assert (getattr(heard, name)[out] == getattr(none, name)[out]).all(), name
    event = {"kind": "tool_response", "side": "input", "microturn": 1, "time_s": 0.25, "name": "calc"}
    event.update(content="42", arguments=None, task=None, topic=None, status=None, target=False)
    sample = make_sample(words=words)
    sample["events.json"] = [event]
    p = pack(sample, LayoutSpec(frame_patches=0, text_slots=16, user_text="none"), first=0, count=6)
    row = p.text[p.kind == IN_TEXT].reshape(6, 16)[1]
    assert row[0] == 0xFF and p.event[p.kind == IN_TEXT].reshape(6, 16)[1, 0]
    with pytest.raises(ValueError, match="user_text"):
        LayoutSpec(user_text="asr")
