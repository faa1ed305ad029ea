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
    others = span(np.asarray(sample["others.dmel.npy"])) if has_others else None
    if output_logmel is None:
        logmel = dequantise_dmel(out_dmel)
    else:
        logmel = span(np.asarray(output_logmel, dtype=np.float32), fill=float(LEVELS[0]))

    slots = microturn_slots(spec)
    per = len(slots)
    n = count * per
    kind = np.tile(slots, count)
    microturn = np.repeat(np.arange(count, dtype=np.int16), per)
    is_out = slots == OUT_DMEL
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

    text = np.full((count, per), TEXT_PAD, dtype=np.int16)
    is_event = np.zeros((count, per), dtype=bool)
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

    q = spec.frame_patches
    patch_valid = np.zeros((count, q), dtype=bool)
    # without frames a read-only zero view: (count * q, 3, 40, 40) would be 35 MB per 150-micro-turn example
    patches = np.broadcast_to(np.zeros((1, 1, 1, 1, 1), np.uint8), (count, q, 3, PATCH_PX, PATCH_PX))
    if frames is not None and q:
        patches = np.zeros((count, q, 3, PATCH_PX, PATCH_PX), dtype=np.uint8)
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
        event=is_event.reshape(n),
        event_bytes_cut=event_cut,
    )
