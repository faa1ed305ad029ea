"""Events on the text channels of the §6 layout: serialised, spilled, never dropped silently, loss only on output."""

from __future__ import annotations

import numpy as np

from schemas.layout import (
    EVENT_CONT,
    EVENT_OPEN,
    IN_TEXT,
    OUT_TEXT,
    LayoutSpec,
    decode_event_bytes,
    microturn_slots,
    pack,
)

W = 12


def _event(kind: str, side: str, k: int, name: str, **kw) -> dict:
    base = {"kind": kind, "side": side, "microturn": k, "time_s": 0.2 * k + 0.05, "name": name, "arguments": None}
    base.update(content=None, task=None, topic=None, status=None, target=side == "output")
    base.update(kw)
    return base


def _sample(events: list[dict], words: list[dict] | None = None) -> dict:
    z = np.zeros((W, 16, 80), np.uint8)
    mask = np.ones(W, np.uint8)
    mask[-2:] = 0
    return {
        "mask.npy": mask,
        "input.dmel.npy": z,
        "output.dmel.npy": z,
        "words.json": words or [],
        "events.json": events,
    }


START = _event("task_start", "output", 2, "task_start", arguments={"name": "convert 20 EUR to USD"}, task="x")
DELIVERY = _event("worker_delivery", "input", 3, "convert", content="21.60 USD", topic="final", status="done")


def _channel(p, kind: int) -> np.ndarray:
    return p.text[p.kind == kind]


def test_output_event_spills_over_microturns_and_decodes_back() -> None:
    spec = LayoutSpec(frame_patches=0, text_slots=24, event_slots=12)
    words = [{"microturn": 2, "stream": "output", "start_s": 0.41, "text": "okay"}]
    p = pack(_sample([START, DELIVERY], words), spec, first=0, count=W)
    assert len(p.kind) == W * spec.slots_per_microturn  # the slot count per micro-turn stays fixed
    out = _channel(p, OUT_TEXT)
    assert decode_event_bytes(out.tolist()) == [("task_start", {"name": "convert 20 EUR to USD"})]
    assert decode_event_bytes(_channel(p, IN_TEXT).tolist()) == [
        ("convert", {"content": "21.60 USD", "status": "done", "topic": "final"})
    ]
    rows = out.reshape(W, spec.text_slots)
    assert bytes(rows[2, :4].astype(np.uint8)) == b"okay" and rows[2, 4] == EVENT_OPEN  # words first, then the event
    assert rows[3, 0] == EVENT_CONT  # the spill continues with a marker
    per_mt_event = (p.event & (p.kind == OUT_TEXT)).reshape(W, -1).sum(axis=1)
    assert per_mt_event.max() <= spec.event_slots and per_mt_event[2] > 0 and per_mt_event[:2].sum() == 0
    # loss: every output event slot is a target; no input event slot is
    assert (p.target_text[p.event & (p.kind == OUT_TEXT)]).all()
    assert not p.target_text[p.event & (p.kind == IN_TEXT)].any()
    assert p.event_bytes_cut == 0


def test_output_event_never_leaks_into_the_input_channel() -> None:
    p = pack(_sample([START]), LayoutSpec(frame_patches=0), first=0, count=W)
    assert not (p.event & (p.kind == IN_TEXT)).any()
    assert not np.isin(_channel(p, IN_TEXT), [EVENT_OPEN, EVENT_CONT]).any()


def test_spans_see_the_same_schedule_as_the_whole_window() -> None:
    spec = LayoutSpec(frame_patches=0)
    sample = _sample([START, DELIVERY])
    whole = pack(sample, spec, first=0, count=W)
    parts = [pack(sample, spec, first=f, count=4) for f in (0, 4, 8)]
    assert np.array_equal(np.concatenate([q.text for q in parts]), whole.text)


def test_bytes_past_the_last_real_microturn_are_counted() -> None:
    late = _event("tool_call", "output", 9, "lookup", arguments={"table": "capitals", "key": "Mongolia"})
    spec = LayoutSpec(frame_patches=0)
    p = pack(_sample([late]), spec, first=0, count=W)
    sent = int((p.event & (p.kind == OUT_TEXT)).sum())
    total = len(b"\xfflookup ") + len(b'{"key":"Mongolia","table":"capitals"}')
    assert p.event_bytes_cut == total - (sent - 0) and p.event_bytes_cut > 0  # one micro-turn (9) is real
    assert sum(pack(_sample([late]), spec, first=f, count=4).event_bytes_cut for f in (0, 4, 8)) == p.event_bytes_cut


def test_slots_do_not_change_with_events() -> None:
    spec = LayoutSpec(frame_patches=4, text_slots=10, event_slots=4)
    assert len(microturn_slots(spec)) == spec.slots_per_microturn
    a = pack(_sample([START, DELIVERY]), spec, first=0, count=W)
    b = pack(_sample([]), spec, first=0, count=W)
    assert a.kind.shape == b.kind.shape and np.array_equal(a.kind, b.kind)
