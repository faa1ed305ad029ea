"""The token layout the trainer sees (DESIGN.md §6): a fixed number of slots per micro-turn, so shapes stay static.

    python -c "from schemas.layout import LayoutSpec, microturn_slots; print(microturn_slots(LayoutSpec()))"

Per micro-turn, in this order (S = spec.text_slots, P = spec.frame_patches, F = 16 dMel frames):

| slots | kind      | content                                                                               |
|-------|-----------|---------------------------------------------------------------------------------------|
| 1     | CHUNK     | marker: a new micro-turn starts                                                       |
| F     | IN_DMEL   | user dMel, one slot per 12.5 ms frame (80 channels of 4-bit codes); `others` adds in  |
| P     | PATCH     | 40x40 patches of the micro-turn's video frame (masked when there is no frame)         |
| S     | IN_TEXT   | bytes of the user (and others) words placed in this micro-turn, then END, then PAD    |
| 1     | SPEAK     | marker: the model's side starts                                                       |
| S     | OUT_TEXT  | bytes of the model words placed in this micro-turn, then END, then PAD                |
| F     | OUT_DMEL  | model dMel frames                                                                     |

Loss only on the output side: OUT_TEXT slots up to and including END, and OUT_DMEL slots of real micro-turns. The
model predicts slot i from positions < i (next-token), and every position attends causally to the *valid* slots
before it (`attendable`), so the output of micro-turn k sees all input up to the end of micro-turn k.

Text: words are UTF-8 bytes joined by one space, in (micro-turn, start) order; more than S - 1 bytes in one
micro-turn are cut (counted in `Packed.text_bytes_cut`). A micro-turn without words still gets END: "say nothing
now" is a prediction too. dMel codes are dequantised with the 16 levels of schemas/dmel.py (-7 + 0.6 i in log10
units), the levels pipeline/features.py quantises to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN, LEVELS, dequantise_dmel
from schemas.frames import patchify as frames_patchify

CHUNK, IN_DMEL, PATCH, IN_TEXT, SPEAK, OUT_TEXT, OUT_DMEL = range(7)
SLOT_KINDS = ("chunk", "in_dmel", "patch", "in_text", "speak", "out_text", "out_dmel")
"""Slot kind id -> name."""

TEXT_END = 256
"""Text token after the last byte of a micro-turn's words (also the only token of a micro-turn without words)."""
TEXT_PAD = 257
"""Text token of an unused text slot: never attended to, never a target."""
TEXT_VOCAB = 258
"""Byte values 0..255, TEXT_END, TEXT_PAD. Heads predict TEXT_END + 1 = 257 classes."""

PATCH_PX = 40
"""Frame patches are 40x40 pixels, RGB."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LayoutSpec:
    """Slot counts of one micro-turn. Defaults follow DESIGN.md §3: 320x240 frames -> 8x6 = 48 patches."""

    frame_patches: int = 48  # PATCH slots per micro-turn (patches of PATCH_PX x PATCH_PX pixels)
    text_slots: int = 16  # IN_TEXT and OUT_TEXT slots each: up to text_slots - 1 bytes, then TEXT_END

    def __post_init__(self) -> None:
        if self.frame_patches < 0:
            raise ValueError(f"frame_patches must be >= 0, got {self.frame_patches}")
        if self.text_slots < 1:
            raise ValueError(f"text_slots must be >= 1 (one slot holds TEXT_END), got {self.text_slots}")

    @property
    def slots_per_microturn(self) -> int:
        return 2 + 2 * FRAMES_PER_MICROTURN + self.frame_patches + 2 * self.text_slots


def microturn_slots(spec: LayoutSpec) -> np.ndarray:
    """The slot kinds of one micro-turn, in order: (spec.slots_per_microturn,) int8 of CHUNK .. OUT_DMEL."""
    counts = (1, FRAMES_PER_MICROTURN, spec.frame_patches, spec.text_slots, 1, spec.text_slots, FRAMES_PER_MICROTURN)
    return np.concatenate([np.full(n, kind, dtype=np.int8) for kind, n in enumerate(counts)])


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Packed:
    """C micro-turns in the §6 layout; N = C * spec.slots_per_microturn token slots, Q = C * spec.frame_patches.

    kind, microturn, dmel, text, attendable, target_text, target_dmel have one row per slot; patch pixels are kept
    apart (the model scatters its stem outputs into the PATCH slots, in order).
    """

    kind: np.ndarray  # (N,) int8 slot kind
    microturn: np.ndarray  # (N,) int16 micro-turn within the packed span, 0..C-1
    dmel: np.ndarray  # (N, 80) uint8 codes of IN_DMEL (user) and OUT_DMEL (model) slots, 0 elsewhere
    others_dmel: np.ndarray  # (N, 80) uint8 codes of the `others` stream in IN_DMEL slots, 0 when absent
    has_others: bool  # whether others_dmel is real
    text: np.ndarray  # (N,) int16 bytes 0..255, TEXT_END, or TEXT_PAD (also in non-text slots)
    logmel: np.ndarray  # (N, 80) float32 continuous log10 mel frames of OUT_DMEL slots (flow-matching target)
    patches: np.ndarray  # (Q, 3, 40, 40) uint8 RGB patch pixels, zeros where there is no frame
    patch_valid: np.ndarray  # (Q,) bool
    attendable: np.ndarray  # (N,) bool: the slot holds content (keys other slots may attend to)
    target_text: np.ndarray  # (N,) bool: an OUT_TEXT slot that is a loss target (bytes and TEXT_END)
    target_dmel: np.ndarray  # (N,) bool: an OUT_DMEL slot of a real micro-turn
    text_bytes_cut: int  # text bytes dropped because a micro-turn had more than text_slots - 1


def patchify(frame_HWC: np.ndarray) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8, H and W multiples of 40 -> (H/40 * W/40, 3, 40, 40) patches, row-major
    (schemas.frames.patchify, flattened and channels first for the model's stem)."""
    if frame_HWC.ndim != 3 or frame_HWC.shape[-1] != 3:
        raise ValueError(f"frame must be (H, W, 3) with H, W multiples of {PATCH_PX}, got {frame_HWC.shape}")
    p = frames_patchify(frame_HWC)  # (rows, cols, 40, 40, 3)
    return np.ascontiguousarray(p.reshape(-1, PATCH_PX, PATCH_PX, 3).transpose(0, 3, 1, 2))


def _text_bytes(words: Sequence[dict[str, Any]], streams: tuple[str, ...], first: int, count: int) -> list[bytes]:
    per_mt: list[list[tuple[float, str]]] = [[] for _ in range(count)]
    for w in words:
        k = int(w["microturn"]) - first
        if w["stream"] in streams and 0 <= k < count:
            per_mt[k].append((float(w["start_s"]), str(w["text"])))
    return [" ".join(t for _, t in sorted(ws)).encode("utf-8") for ws in per_mt]


def pack(
    sample: dict[str, Any],
    spec: LayoutSpec,
    *,
    first: int,
    count: int,
    frames: np.ndarray | None = None,
    frame_valid: np.ndarray | None = None,
    output_logmel: np.ndarray | None = None,
) -> Packed:
    """Micro-turns [first, first + count) of a decoded sample in the §6 layout.

    Args:
        sample: decoded sample (schemas.reader.decode_sample): 'input.dmel.npy', 'output.dmel.npy' (W, 16, 80)
            uint8, optional 'others.dmel.npy', 'mask.npy' (W,), 'words.json'. Micro-turns past W count as padding.
        spec: slot counts.
        first, count: the span, in window micro-turns; count >= 1.
        frames: optional (W, H, W_px, 3) uint8 video frames, one per micro-turn, with H/40 * W_px/40 ==
            spec.frame_patches.
        frame_valid: (W,) bool with `frames`: False where no frame is on screen yet (masked); default all True.
        output_logmel: optional (W, 16, 80) float32 log10 mel of the model stream from raw audio; default: the
            dequantised output dMel.

    Returns:
        A `Packed` with N = count * spec.slots_per_microturn slots.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    mask = np.asarray(sample["mask.npy"]).astype(bool)
    window = len(mask)
    idx = np.arange(first, first + count)
    inside = (idx >= 0) & (idx < window)
    real = np.zeros(count, dtype=bool)
    real[inside] = mask[idx[inside]]

    def span(array: np.ndarray, fill: float = 0) -> np.ndarray:
        out = np.full((count, *array.shape[1:]), fill, dtype=array.dtype)
        out[inside] = array[idx[inside]]
        out[~real] = fill
        return out

    n_ch = DMEL_CHANNELS
    in_dmel = span(np.asarray(sample["input.dmel.npy"]))
    out_dmel = span(np.asarray(sample["output.dmel.npy"]))
    has_others = "others.dmel.npy" in sample
    others = span(np.asarray(sample["others.dmel.npy"])) if has_others else np.zeros_like(in_dmel)
    if output_logmel is None:
        logmel = dequantise_dmel(out_dmel)
    else:
        logmel = span(np.asarray(output_logmel, dtype=np.float32), fill=float(LEVELS[0]))

    slots = microturn_slots(spec)
    per = len(slots)
    n = count * per
    kind = np.tile(slots, count)
    microturn = np.repeat(np.arange(count, dtype=np.int16), per)
    is_in, is_out = (slots == IN_DMEL), (slots == OUT_DMEL)

    dmel = np.zeros((count, per, n_ch), dtype=np.uint8)
    dmel[:, is_in] = in_dmel
    dmel[:, is_out] = out_dmel
    others_dmel = np.zeros((count, per, n_ch), dtype=np.uint8)
    others_dmel[:, is_in] = others
    logmel_n = np.zeros((count, per, n_ch), dtype=np.float32)
    logmel_n[:, is_out] = logmel

    text = np.full((count, per), TEXT_PAD, dtype=np.int16)
    cut = 0
    words = sample.get("words.json", [])
    for kind_id, streams in ((IN_TEXT, ("input", "others")), (OUT_TEXT, ("output",))):
        cols = np.flatnonzero(slots == kind_id)
        for k, data in enumerate(_text_bytes(words, streams, first, count)):
            if not real[k]:
                continue
            kept = data[: spec.text_slots - 1]
            cut += len(data) - len(kept)
            text[k, cols[: len(kept)]] = np.frombuffer(kept, dtype=np.uint8)
            text[k, cols[len(kept)]] = TEXT_END

    q = spec.frame_patches
    patches = np.zeros((count, q, 3, PATCH_PX, PATCH_PX), dtype=np.uint8)
    patch_valid = np.zeros((count, q), dtype=bool)
    if frames is not None and q:
        fr = span(np.asarray(frames, dtype=np.uint8))
        has_frame = span(np.ones(window, bool) if frame_valid is None else np.asarray(frame_valid, bool))
        for k in range(count):
            if real[k] and has_frame[k]:
                p = patchify(fr[k])
                if len(p) != q:
                    raise ValueError(f"a {fr[k].shape} frame gives {len(p)} patches; spec.frame_patches is {q}")
                patches[k], patch_valid[k] = p, True

    attendable = np.repeat(real[:, None], per, axis=1)
    is_text = (slots == IN_TEXT) | (slots == OUT_TEXT)
    attendable[:, is_text] &= text[:, is_text] != TEXT_PAD
    attendable[:, slots == PATCH] &= patch_valid
    target_text = attendable & (slots == OUT_TEXT)[None]
    target_dmel = attendable & is_out[None]
    return Packed(
        kind=kind,
        microturn=microturn,
        dmel=dmel.reshape(n, n_ch),
        others_dmel=others_dmel.reshape(n, n_ch),
        has_others=has_others,
        text=text.reshape(n),
        logmel=logmel_n.reshape(n, n_ch),
        patches=patches.reshape(count * q, 3, PATCH_PX, PATCH_PX),
        patch_valid=patch_valid.reshape(count * q),
        attendable=attendable.reshape(n),
        target_text=target_text.reshape(n),
        target_dmel=target_dmel.reshape(n),
        text_bytes_cut=cut,
    )
