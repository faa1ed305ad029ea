"""The token layout the trainer sees (DESIGN.md §6): a fixed number of slots per micro-turn, so shapes stay static.

    python -c "from schemas.layout import LayoutSpec, microturn_slots; print(microturn_slots(LayoutSpec()))"

Per micro-turn, in this order (S = spec.text_slots, P = spec.frame_patches, F = 16 dMel frames):

| slots | kind      | content                                                                               |
|-------|-----------|---------------------------------------------------------------------------------------|
| 1     | CHUNK     | marker: a new micro-turn starts                                                       |
| F     | IN_DMEL   | user dMel, one slot per 12.5 ms frame (80 channels of 4-bit codes); `others` adds in  |
| P     | PATCH     | 40x40 patches of the micro-turn's video frame (masked when there is no frame)         |
| S     | IN_TEXT   | bytes of the user (and others) words placed in this micro-turn, then END, then PAD    |
|       |           | (`user_text="heard"`); with `user_text="none"` no word byte, only input events + END  |
| 1     | SPEAK     | marker: the model's side starts                                                       |
| S     | OUT_TEXT  | bytes of the model words placed in this micro-turn, then END, then PAD                |
| F     | OUT_DMEL  | model dMel frames                                                                     |

Loss only on the output side: OUT_TEXT slots up to and including END, and OUT_DMEL slots of real micro-turns. The
model predicts slot i from positions < i (next-token), and every position attends causally to the *valid* slots
before it (`attendable`), so the output of micro-turn k sees all input up to the end of micro-turn k.

User text (DESIGN.md §6): `spec.user_text` is `"heard"` (the user's and others' words in the micro-turn that
contains their end, as a streaming recogniser would give them) or `"none"` (audio and video only, what a deployed
interaction model hears: no IN_TEXT slot carries a word byte; input-side event arrivals such as tool responses are
not speech and still travel there). The model side's words are packed the same way under both.

Text: words are UTF-8 bytes joined by one space, in (micro-turn, start) order; more than S - 1 bytes in one
micro-turn are cut (counted in `Packed.text_bytes_cut`). A micro-turn without words still gets END: "say nothing
now" is a prediction too.

Events (events.json, schemas/events.py) travel on the text channel of their side: output-side events (the model's
task_start, task_send, task_resolve, tool calls) in OUT_TEXT, so they are loss targets like the model's words;
input-side arrivals (tool_response, worker_delivery) in IN_TEXT, never targets. One event is serialised as

    EVENT_OPEN (byte 0xFF) · name (ASCII) · space · compact JSON (ASCII-escaped) of its payload

(payload: the arguments of an output event; the content of a tool_response; {"content", "status", "topic"} of a
worker_delivery; `encode_event`). 0xFF and 0xFE never occur in UTF-8, so they cannot be confused with words. Per
micro-turn and side, the words come first, then at most `spec.event_slots` bytes of pending events, then END;
while events are pending, the words get the remaining text_slots - 1 - (event bytes) slots. An event that does not
fit spills into the next micro-turns, each continuation chunk starting with EVENT_CONT (byte 0xFE); nothing is
dropped silently: event bytes still pending after the window's last real micro-turn are counted in
`Packed.event_bytes_cut`. The spill is scheduled over the whole window and then sliced, so cutting a sample into
examples never moves an event. `decode_event_bytes` reads the events back from a channel's tokens.

dMel codes are dequantised with the 16 levels of schemas/dmel.py (-7 + 0.6 i in log10 units), the levels
pipeline/features.py quantises to.

Two implementations of the one layout: `pack` (one example, the reference; generation packs with it) and `prepare`
+ `PackedBatch` (the trainer's loader: a sample's text, events and padding prepared once, then each example written
straight into its batch's arrays, no per-example arrays and no stacking copy). tests/schemas/test_layout_batch.py
and tests/trainer/test_data.py check that they give equal arrays, every field. A batch's `logmel` holds the
OUT_DMEL slots' frames only, (B, C * 16, 80) (`output_logmel_rows`): the model reads its flow target there alone,
and the whole (N, 80) float32 array is 5.5 MB of zeros per 150-micro-turn example.
"""

from __future__ import annotations

import dataclasses
import json
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
EVENT_OPEN = 0xFF
"""Text byte that starts an event on a text channel (never a UTF-8 byte)."""
EVENT_CONT = 0xFE
"""Text byte that starts a micro-turn's continuation of an event spilled from the micro-turn before."""
TEXT_VOCAB = 258
"""Byte values 0..255, TEXT_END, TEXT_PAD. Heads predict TEXT_END + 1 = 257 classes."""

PATCH_PX = 40
"""Frame patches are 40x40 pixels, RGB."""

USER_TEXT_MODES = ("heard", "none")
"""`LayoutSpec.user_text`: the user's words in IN_TEXT as heard (at their end), or no user words at all."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LayoutSpec:
    """Slot counts of one micro-turn. Defaults follow DESIGN.md §3: 320x240 frames -> 8x6 = 48 patches."""

    frame_patches: int = 48  # PATCH slots per micro-turn (patches of PATCH_PX x PATCH_PX pixels)
    text_slots: int = 16  # IN_TEXT and OUT_TEXT slots each: up to text_slots - 1 bytes, then TEXT_END
    event_slots: int = 8  # at most this many of a micro-turn's text bytes carry events (the rest: words)
    user_text: str = "heard"  # "heard": user words in IN_TEXT at their end; "none": audio (and video) only

    def __post_init__(self) -> None:
        if self.user_text not in USER_TEXT_MODES:
            raise ValueError(f"user_text must be one of {USER_TEXT_MODES}, got {self.user_text!r}")
        if self.frame_patches < 0:
            raise ValueError(f"frame_patches must be >= 0, got {self.frame_patches}")
        if self.text_slots < 1:
            raise ValueError(f"text_slots must be >= 1 (one slot holds TEXT_END), got {self.text_slots}")
        if self.event_slots < 2:
            raise ValueError(f"event_slots must be >= 2 (a marker and one byte), got {self.event_slots}")

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
    others_dmel: np.ndarray  # (N, 80) uint8 codes of the `others` stream in IN_DMEL slots, 0 when absent (then a
    # read-only zero view)
    has_others: bool  # whether others_dmel is real
    text: np.ndarray  # (N,) int16 bytes 0..255, TEXT_END, or TEXT_PAD (also in non-text slots)
    logmel: np.ndarray  # (N, 80) float32 continuous log10 mel frames of OUT_DMEL slots (flow-matching target)
    patches: np.ndarray  # (Q, 3, 40, 40) uint8 RGB patch pixels, zeros where there is no frame (a read-only zero
    # view when the sample has no frames)
    patch_valid: np.ndarray  # (Q,) bool
    attendable: np.ndarray  # (N,) bool: the slot holds content (keys other slots may attend to)
    target_text: np.ndarray  # (N,) bool: an OUT_TEXT slot that is a loss target (bytes and TEXT_END)
    target_dmel: np.ndarray  # (N,) bool: an OUT_DMEL slot of a real micro-turn
    text_bytes_cut: int  # text bytes dropped because a micro-turn had more than text_slots - 1
    event: np.ndarray  # (N,) bool: a text slot holding event bytes (markers included), either side
    event_bytes_cut: int  # event bytes still pending after the window's last real micro-turn (counted once)


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


def encode_event(event: dict[str, Any]) -> bytes:
    """One events.json entry as text-channel bytes: EVENT_OPEN, name, a space, compact ASCII JSON of its payload."""
    if event["kind"] == "worker_delivery":
        payload: Any = {k: event.get(k) for k in ("content", "status", "topic") if event.get(k) is not None}
    elif event["side"] == "output":
        payload = event.get("arguments") or {}
    else:
        payload = event.get("content")
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return bytes([EVENT_OPEN]) + str(event["name"]).encode("ascii", "backslashreplace") + b" " + body.encode("ascii")


def decode_event_bytes(data: Sequence[int]) -> list[tuple[str, Any]]:
    """(name, payload) of each whole event in a channel's tokens (its micro-turns' text slots in order, with their
    words, TEXT_END and TEXT_PAD): the inverse of `encode_event` over the spill; an event cut at the window's end
    is left out."""
    stream = bytearray()
    inside = False
    for b in data:
        if b in (EVENT_OPEN, EVENT_CONT):
            inside = True
            if b == EVENT_OPEN:
                stream.append(EVENT_OPEN)
        elif b >= TEXT_END:
            inside = False
        elif inside:
            stream.append(b)
    out = []
    for chunk in bytes(stream).split(bytes([EVENT_OPEN]))[1:]:
        name, _, body = chunk.decode("ascii").partition(" ")
        try:
            out.append((name, json.loads(body)))
        except json.JSONDecodeError:  # cut at the window's end (counted in Packed.event_bytes_cut)
            continue
    return out


def _schedule_events(
    events: Sequence[dict[str, Any]], side: str, window: int, real: np.ndarray, budget: int
) -> tuple[list[bytes], int]:
    """Per window micro-turn, the event bytes of `side` it carries (at most `budget`), and the bytes left pending
    after the last real micro-turn. Events enter the queue in their micro-turn, in the order of events.json."""
    starts: list[list[bytes]] = [[] for _ in range(window)]
    for e in events:
        k = int(e["microturn"])
        if e["side"] == side and 0 <= k < window:
            starts[k].append(encode_event(e))
    out = [b""] * window
    queue, mid = b"", False
    for k in range(window):
        queue += b"".join(starts[k])
        if not queue or not real[k]:
            continue
        head = bytes([EVENT_CONT]) if mid else b""
        take = queue[: budget - len(head)]
        out[k], queue = head + take, queue[len(take) :]
        mid = bool(queue) and queue[0] != EVENT_OPEN
    return out, len(queue)


def _run(slots: np.ndarray, kind: int) -> slice:
    """The slots of `kind` in one micro-turn, as a slice (they are consecutive: microturn_slots)."""
    at = np.flatnonzero(slots == kind)
    return slice(int(at[0]), int(at[-1]) + 1) if len(at) else slice(0, 0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Span:
    """Micro-turns [first, first + count) of a window of `window` micro-turns (all counts in micro-turns)."""

    count: int  # C: micro-turns packed
    window: int  # W: micro-turns the sample holds (len of its mask)
    idx: np.ndarray  # (C,) int window micro-turn of each packed one (may lie outside the window)
    inside: np.ndarray  # (C,) bool: the packed micro-turn lies in the window
    real: np.ndarray  # (C,) bool: ... and is not masked (not padding)

    def take(self, array: np.ndarray, fill: float = 0) -> np.ndarray:
        """(C, ...) rows of a (W, ...) per-micro-turn array, `fill` outside the window and where masked."""
        out = np.full((self.count, *array.shape[1:]), fill, dtype=array.dtype)
        out[self.inside] = array[self.idx[self.inside]]
        out[~self.real] = fill
        return out


def _span(mask: np.ndarray, first: int, count: int) -> _Span:
    """The span [first, first + count) of a window whose (W,) bool `mask` marks its real micro-turns."""
    idx = np.arange(first, first + count)
    inside = (idx >= 0) & (idx < len(mask))
    real = np.zeros(count, dtype=bool)
    real[inside] = mask[idx[inside]]
    return _Span(count=count, window=len(mask), idx=idx, inside=inside, real=real)


def _pack_audio(
    sample: dict[str, Any], span: _Span, slots: np.ndarray, output_logmel: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The audio slots of the span, each (C, P, 80) for P = slots per micro-turn: uint8 dMel codes of IN_DMEL
    (user) and OUT_DMEL (model) slots, uint8 others' codes in IN_DMEL slots (a read-only zero view without others),
    float32 log10 mel of OUT_DMEL slots; and whether the sample has others."""
    count, per, n_ch = span.count, len(slots), DMEL_CHANNELS
    in_dmel = span.take(np.asarray(sample["input.dmel.npy"]))
    out_dmel = span.take(np.asarray(sample["output.dmel.npy"]))
    has_others = "others.dmel.npy" in sample
    others = span.take(np.asarray(sample["others.dmel.npy"])) if has_others else None
    if output_logmel is None:
        logmel = dequantise_dmel(out_dmel)
    else:
        logmel = span.take(np.asarray(output_logmel, dtype=np.float32), fill=float(LEVELS[0]))
    in_at, out_at = _run(slots, IN_DMEL), _run(slots, OUT_DMEL)  # slices: a copy, not a boolean scatter
    dmel = np.zeros((count, per, n_ch), dtype=np.uint8)
    dmel[:, in_at] = in_dmel
    dmel[:, out_at] = out_dmel
    if others is None:  # a read-only zero view: no memory for a stream the sample does not have
        others_dmel = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (count, per, n_ch))
    else:
        others_dmel = np.zeros((count, per, n_ch), dtype=np.uint8)
        others_dmel[:, in_at] = others
    logmel_n = np.zeros((count, per, n_ch), dtype=np.float32)
    logmel_n[:, out_at] = logmel
    return dmel, others_dmel, logmel_n, has_others


def _pack_text(
    sample: dict[str, Any], spec: LayoutSpec, slots: np.ndarray, span: _Span, first: int, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The text slots of the span: (C, P) int16 bytes / TEXT_END / TEXT_PAD per slot, (C, P) bool event bytes;
    word bytes cut for want of slots, and event bytes still pending after the window's last real micro-turn
    (counted when the span holds that micro-turn). `mask`: (W,) bool real micro-turns of the window."""
    count, window, real = span.count, span.window, span.real
    text = np.full((count, len(slots)), TEXT_PAD, dtype=np.int16)
    is_event = np.zeros((count, len(slots)), dtype=bool)
    cut = event_cut = 0
    words = sample.get("words.json", [])
    events = sample.get("events.json") or []
    budget = min(spec.event_slots, spec.text_slots - 1)
    real_w = mask.copy()
    last_real = int(np.flatnonzero(real_w)[-1]) if real_w.any() else -1
    heard: tuple[str, ...] = ("input", "others") if spec.user_text == "heard" else ()
    for kind_id, streams, side in ((IN_TEXT, heard, "input"), (OUT_TEXT, ("output",), "output")):
        cols = np.flatnonzero(slots == kind_id)
        ev_bytes, pending = [b""] * window, 0
        if events:
            if budget >= 2:
                ev_bytes, pending = _schedule_events(events, side, window, real_w, budget)
            else:  # no room for a marker and a byte: every event byte is counted as cut
                pending = sum(len(encode_event(e)) for e in events if e["side"] == side)
        if first <= last_real < first + count:
            event_cut += pending
        for k, data in enumerate(_text_bytes(words, streams, first, count)):
            if not real[k]:
                continue
            ev = ev_bytes[first + k] if 0 <= first + k < window else b""
            kept = data[: spec.text_slots - 1 - len(ev)]
            cut += len(data) - len(kept)
            row = kept + ev
            text[k, cols[: len(row)]] = np.frombuffer(row, dtype=np.uint8)
            is_event[k, cols[len(kept) : len(row)]] = True
            text[k, cols[len(row)]] = TEXT_END
    return text, is_event, cut, event_cut


def _pack_patches(
    spec: LayoutSpec, span: _Span, frames: np.ndarray | None, frame_valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The span's patch pixels (C, Q, 3, 40, 40) uint8 for Q = spec.frame_patches (a read-only zero view without
    frames) and (C, Q) bool valid patches: a real micro-turn with a frame on screen."""
    count, q = span.count, spec.frame_patches
    patch_valid = np.zeros((count, q), dtype=bool)
    # without frames a read-only zero view: (count * q, 3, 40, 40) would be 35 MB per 150-micro-turn example
    patches = np.broadcast_to(np.zeros((1, 1, 1, 1, 1), np.uint8), (count, q, 3, PATCH_PX, PATCH_PX))
    if frames is not None and q:
        patches = np.zeros((count, q, 3, PATCH_PX, PATCH_PX), dtype=np.uint8)
        fr = span.take(np.asarray(frames, dtype=np.uint8))
        has_frame = span.take(np.ones(span.window, bool) if frame_valid is None else np.asarray(frame_valid, bool))
        for k in range(count):
            if span.real[k] and has_frame[k]:
                p = patchify(fr[k])
                if len(p) != q:
                    raise ValueError(f"a {fr[k].shape} frame gives {len(p)} patches; spec.frame_patches is {q}")
                patches[k], patch_valid[k] = p, True
    return patches, patch_valid


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
    span = _span(mask, first, count)
    slots = microturn_slots(spec)
    per, n_ch = len(slots), DMEL_CHANNELS
    n = count * per
    dmel, others_dmel, logmel_n, has_others = _pack_audio(sample, span, slots, output_logmel)
    text, is_event, cut, event_cut = _pack_text(sample, spec, slots, span, first, mask)
    patches, patch_valid = _pack_patches(spec, span, frames, frame_valid)
    q = spec.frame_patches
    attendable = np.repeat(span.real[:, None], per, axis=1)
    is_text = (slots == IN_TEXT) | (slots == OUT_TEXT)
    attendable[:, is_text] &= text[:, is_text] != TEXT_PAD
    attendable[:, slots == PATCH] &= patch_valid
    target_text = attendable & (slots == OUT_TEXT)[None]
    target_dmel = attendable & (slots == OUT_DMEL)[None]
    return Packed(
        kind=np.tile(slots, count),
        microturn=np.repeat(np.arange(count, dtype=np.int16), per),
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
        event=is_event.reshape(n),
        event_bytes_cut=event_cut,
    )


# The loader's path: the same layout written straight into a batch's arrays. `pack` above is the reference (and
# what generation packs with); tests/schemas/test_layout_batch.py checks that `PackedBatch` rows equal `pack` +
# stacking on samples with video, others, events and text. What a window needs whatever its span (text bytes and
# events placed per micro-turn, codes with padding zeroed) is done once per window by `prepare`; `PackedBatch.put`
# then only copies slices, and the buffers are allocated once per batch (no per-example arrays, no stacking copy).


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """One decoded sample ready to be packed at any span (W window micro-turns, S = spec.text_slots)."""

    spec: LayoutSpec
    real: np.ndarray  # (W,) bool: the window's mask
    in_dmel: np.ndarray  # (W, 16, 80) uint8, zero where not real
    out_dmel: np.ndarray  # (W, 16, 80) uint8 codes 0..15, zero where not real
    others: np.ndarray | None  # (W, 16, 80) uint8, zero where not real; None when the sample has no others stream
    logmel: np.ndarray | None  # (W, 16, 80) float32, LEVELS[0] where not real; None: dequantise out_dmel
    in_text: np.ndarray  # (W, S) int16 IN_TEXT tokens of each micro-turn (TEXT_PAD only where not real)
    out_text: np.ndarray  # (W, S) int16 OUT_TEXT tokens
    in_event: np.ndarray  # (W, S) bool: IN_TEXT slots holding event bytes
    out_event: np.ndarray  # (W, S) bool
    text_cut: np.ndarray  # (W,) int64 text bytes cut in each micro-turn (both sides)
    event_pending: int  # event bytes pending after the last real micro-turn (both sides)
    last_real: int  # the last real micro-turn, -1 when none
    frames: np.ndarray | None  # (W, H, W_px, 3) uint8 video frames
    has_frame: np.ndarray | None  # (W,) bool with frames: real and on screen


def _text_rows(
    per_mt: dict[int, list[tuple[float, str]]], ev_bytes: list[bytes], real: np.ndarray, s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One side's text tokens (W, S) int16, event mask (W, S) bool and bytes cut (W,) of every real micro-turn: its
    words (cut to leave room for its events), its event bytes, TEXT_END; as `pack` places them, in one scatter.

    Args:
        per_mt: {micro-turn: [(start_s, text) of its words]} (micro-turns without words left out).
        ev_bytes: (W,) the event bytes each micro-turn carries (`_schedule_events`).
    """
    w = len(real)
    lens = np.zeros(w, dtype=np.int64)
    cut = np.zeros(w, dtype=np.int64)
    rows: list[bytes] = []
    kept_len: list[int] = []
    ks = sorted({k for k in per_mt if real[k]} | {k for k, ev in enumerate(ev_bytes) if ev and real[k]})
    for k in ks:  # only micro-turns with words or events: the others hold TEXT_END alone
        ws = per_mt.get(k)
        data = " ".join(t for _, t in sorted(ws)).encode("utf-8") if ws else b""
        ev = ev_bytes[k]
        kept = data[: s - 1 - len(ev)]
        cut[k] = len(data) - len(kept)
        rows.append(kept + ev)
        kept_len.append(len(kept))
    text = np.full((w, s), TEXT_PAD, dtype=np.int16)
    event = np.zeros((w, s), dtype=bool)
    if ks:
        row_at = np.asarray(ks, dtype=np.int64)
        row_len = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        lens[row_at] = row_len
        flat = np.frombuffer(b"".join(rows), dtype=np.uint8)
        r = np.repeat(row_at, row_len)
        col = np.arange(len(flat)) - np.repeat(np.cumsum(row_len) - row_len, row_len)
        text[r, col] = flat
        event[r, col] = col >= np.repeat(np.asarray(kept_len, dtype=np.int64), row_len)
    at = np.flatnonzero(real)
    text[at, lens[at]] = TEXT_END
    return text, event, cut


def prepare(
    sample: dict[str, Any],
    spec: LayoutSpec,
    *,
    frames: np.ndarray | None = None,
    frame_valid: np.ndarray | None = None,
    output_logmel: np.ndarray | None = None,
) -> Prepared:
    """A decoded sample made ready for `PackedBatch.put` at any span; the arguments are `pack`'s."""
    real = np.asarray(sample["mask.npy"]).astype(bool)
    window = len(real)
    pad = not real.all()

    def codes(name: str) -> np.ndarray:
        a = np.asarray(sample[name])
        if pad:
            a = a * real[:, None, None]
        return a.astype(np.uint8, copy=False)

    out_raw = np.asarray(sample["output.dmel.npy"])
    if output_logmel is None:
        if not np.issubdtype(out_raw.dtype, np.integer):
            raise ValueError(f"dMel codes must be integers in 0..{len(LEVELS) - 1}, got dtype {out_raw.dtype}")
        lo, hi = (int(out_raw.min()), int(out_raw.max())) if out_raw.size else (0, 0)
        if lo < 0 or hi >= len(LEVELS):
            raise ValueError(f"dMel codes must be in 0..{len(LEVELS) - 1}, got {lo}..{hi}")
        logmel = None
    else:
        logmel = np.array(output_logmel, dtype=np.float32)
        logmel[~real] = LEVELS[0]
    # per micro-turn and side: the words (sorted by start), the scheduled events
    s = spec.text_slots
    heard: tuple[str, ...] = ("input", "others") if spec.user_text == "heard" else ()
    words_in: dict[int, list[tuple[float, str]]] = {}
    words_out: dict[int, list[tuple[float, str]]] = {}
    for w in sample.get("words.json", []):
        k = int(w["microturn"])
        if 0 <= k < window:
            if w["stream"] in heard:
                words_in.setdefault(k, []).append((float(w["start_s"]), str(w["text"])))
            elif w["stream"] == "output":
                words_out.setdefault(k, []).append((float(w["start_s"]), str(w["text"])))
    events = sample.get("events.json") or []
    budget = min(spec.event_slots, spec.text_slots - 1)
    pending_all = 0
    sides = []
    for side, per_mt in (("input", words_in), ("output", words_out)):
        ev_bytes, pending = [b""] * window, 0
        if events:
            if budget >= 2:
                ev_bytes, pending = _schedule_events(events, side, window, real, budget)
            else:  # no room for a marker and a byte: every event byte is counted as cut
                pending = sum(len(encode_event(e)) for e in events if e["side"] == side)
        pending_all += pending
        sides.append(_text_rows(per_mt, ev_bytes, real, s))
    (in_text, in_event, in_cut), (out_text, out_event, out_cut) = sides
    has_frame = None
    if frames is not None and spec.frame_patches:
        frames = np.asarray(frames, dtype=np.uint8)
        has_frame = real & (np.ones(window, bool) if frame_valid is None else np.asarray(frame_valid, bool))
    else:
        frames = None
    return Prepared(
        spec=spec,
        real=real,
        in_dmel=codes("input.dmel.npy"),
        out_dmel=codes("output.dmel.npy"),
        others=codes("others.dmel.npy") if "others.dmel.npy" in sample else None,
        logmel=logmel,
        in_text=in_text,
        out_text=out_text,
        in_event=in_event,
        out_event=out_event,
        text_cut=in_cut + out_cut,
        event_pending=pending_all,
        last_real=int(np.flatnonzero(real)[-1]) if real.any() else -1,
        frames=frames,
        has_frame=has_frame,
    )


def output_logmel_rows(packed: Packed) -> np.ndarray:
    """The rows of `packed.logmel` at its OUT_DMEL slots, in slot order: (C * 16, 80) float32. What a batch holds
    as 'logmel' per example (the other rows are zeros that nothing reads; 5.5 MB per 150-micro-turn example)."""
    return packed.logmel[packed.kind == OUT_DMEL]


class PackedBatch:
    """B examples of C micro-turns in the §6 layout, written in place: `arrays()` gives the fields of `Packed` with
    a leading batch dim (as `np.stack` of B `pack` results would), `has_others` (B,) and the cut counts summed,
    except `logmel`: (B, C * 16, 80), the OUT_DMEL slots' rows only (`output_logmel_rows`).

    Each row is written once (`put`); a row never written holds an empty, fully masked example (`pack` of a sample
    without real micro-turns). others_dmel and patches get memory only when an example has others or a valid frame;
    until then `arrays()` gives them as a read-only zero view.
    """

    def __init__(self, spec: LayoutSpec, count: int, size: int) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.spec, self.count, self.size = spec, count, size
        slots = microturn_slots(spec)
        self.per = per = len(slots)
        n, q = count * per, spec.frame_patches
        self.kind = np.broadcast_to(np.tile(slots, count), (size, n)).copy()
        self.microturn = np.broadcast_to(np.repeat(np.arange(count, dtype=np.int16), per), (size, n)).copy()
        self.dmel = np.zeros((size, n, DMEL_CHANNELS), dtype=np.uint8)
        self.others_dmel: np.ndarray | None = None
        self.text = np.full((size, n), TEXT_PAD, dtype=np.int16)
        # only the OUT_DMEL slots' frames (the rest of Packed.logmel is zeros no one reads): every row written
        self.logmel = np.empty((size, count * FRAMES_PER_MICROTURN, DMEL_CHANNELS), dtype=np.float32)
        self.patches: np.ndarray | None = None
        self.patch_valid = np.zeros((size, count * q), dtype=bool)
        self.attendable = np.zeros((size, n), dtype=bool)
        self.target_text = np.zeros((size, n), dtype=bool)
        self.target_dmel = np.zeros((size, n), dtype=bool)
        self.event = np.zeros((size, n), dtype=bool)
        self.has_others = np.zeros(size, dtype=bool)
        self.written = np.zeros(size, dtype=bool)
        self.text_bytes_cut = self.event_bytes_cut = 0
        self._at = {kind: _run(slots, kind) for kind in range(len(SLOT_KINDS))}

    def put(self, row: int, prepared: Prepared, *, first: int) -> None:
        """Write micro-turns [first, first + count) of a prepared sample as example `row` (as `pack` would)."""
        if prepared.spec != self.spec:
            raise ValueError(f"the sample was prepared for {prepared.spec}, the batch has {self.spec}")
        c, per, at = self.count, self.per, self._at
        if self.written[row]:
            raise ValueError(f"row {row} of the batch is written already")
        self.written[row] = True
        window = len(prepared.real)
        a, b = max(0, -first), min(c, window - first)  # the span's micro-turns inside the window: [a, b)
        real = np.zeros(c, dtype=bool)
        logmel_all = self.logmel[row].reshape(c, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
        logmel_all[:a] = LEVELS[0]  # outside the window: as dequantised zero codes
        logmel_all[max(a, b) :] = LEVELS[0]
        if a < b:
            lo, hi = first + a, first + b
            real[a:b] = prepared.real[lo:hi]
            dmel = self.dmel[row].reshape(c, per, DMEL_CHANNELS)
            dmel[a:b, at[IN_DMEL]] = prepared.in_dmel[lo:hi]
            dmel[a:b, at[OUT_DMEL]] = prepared.out_dmel[lo:hi]
            if prepared.others is not None:
                if self.others_dmel is None:
                    self.others_dmel = np.zeros_like(self.dmel)
                others = self.others_dmel[row].reshape(c, per, DMEL_CHANNELS)
                others[a:b, at[IN_DMEL]] = prepared.others[lo:hi]
            logmel = logmel_all[a:b]
            if prepared.logmel is None:
                np.take(LEVELS, prepared.out_dmel[lo:hi], out=logmel, mode="clip")  # codes checked by prepare
            else:
                logmel[...] = prepared.logmel[lo:hi]
            text = self.text[row].reshape(c, per)
            event = self.event[row].reshape(c, per)
            text[a:b, at[IN_TEXT]] = prepared.in_text[lo:hi]
            text[a:b, at[OUT_TEXT]] = prepared.out_text[lo:hi]
            event[a:b, at[IN_TEXT]] = prepared.in_event[lo:hi]
            event[a:b, at[OUT_TEXT]] = prepared.out_event[lo:hi]
            self.text_bytes_cut += int(prepared.text_cut[lo:hi].sum())
            if prepared.frames is not None and prepared.has_frame is not None:
                q = self.spec.frame_patches
                for k in np.flatnonzero(prepared.has_frame[lo:hi]).tolist():
                    p = patchify(prepared.frames[lo + k])
                    if len(p) != q:
                        shape = prepared.frames[lo + k].shape
                        raise ValueError(f"a {shape} frame gives {len(p)} patches; spec.frame_patches is {q}")
                    if self.patches is None:
                        self.patches = np.zeros((self.size, c * q, 3, PATCH_PX, PATCH_PX), dtype=np.uint8)
                    k_at = a + k
                    self.patches[row, k_at * q : (k_at + 1) * q] = p
                    self.patch_valid[row, k_at * q : (k_at + 1) * q] = True
        if first <= prepared.last_real < first + c:
            self.event_bytes_cut += prepared.event_pending
        self.has_others[row] = prepared.others is not None
        attendable = self.attendable[row].reshape(c, per)
        attendable[:] = real[:, None]
        text = self.text[row].reshape(c, per)
        for kind in (IN_TEXT, OUT_TEXT):
            attendable[:, at[kind]] &= text[:, at[kind]] != TEXT_PAD
        attendable[:, at[PATCH]] &= self.patch_valid[row].reshape(c, -1)
        self.target_text[row].reshape(c, per)[:, at[OUT_TEXT]] = attendable[:, at[OUT_TEXT]]
        self.target_dmel[row].reshape(c, per)[:, at[OUT_DMEL]] = attendable[:, at[OUT_DMEL]]

    def arrays(self) -> dict[str, Any]:
        """{field of `Packed`: (B, ...) array}, in `Packed`'s field order; has_others (B,) bool, the cut counts
        as ints (summed over the batch); logmel (B, C * 16, 80) (`output_logmel_rows` of each example)."""
        n, q = self.count * self.per, self.count * self.spec.frame_patches
        for row in np.flatnonzero(~self.written).tolist():  # an empty example: dequantised zero codes
            self.logmel[row] = LEVELS[0]
            self.written[row] = True
        zero = np.zeros((), dtype=np.uint8)
        others = self.others_dmel
        patches = self.patches
        return {
            "kind": self.kind,
            "microturn": self.microturn,
            "dmel": self.dmel,
            "others_dmel": np.broadcast_to(zero, (self.size, n, DMEL_CHANNELS)) if others is None else others,
            "has_others": self.has_others,
            "text": self.text,
            "logmel": self.logmel,
            "patches": np.broadcast_to(zero, (self.size, q, 3, PATCH_PX, PATCH_PX)) if patches is None else patches,
            "patch_valid": self.patch_valid,
            "attendable": self.attendable,
            "target_text": self.target_text,
            "target_dmel": self.target_dmel,
            "text_bytes_cut": self.text_bytes_cut,
            "event": self.event,
            "event_bytes_cut": self.event_bytes_cut,
        }
