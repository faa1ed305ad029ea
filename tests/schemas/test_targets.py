"""Proactive targets: the bundle's "targets" list, its errors, the sample member and the window cut."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.targets import window_targets
from schemas.bundle import BundleError, conversation_from_dict, conversation_to_dict
from schemas.sample import MicroTurnSample, SampleMeta, SampleSpeakers
from schemas.targets import SampleTarget, make_target, parse_targets, target_to_dict

GOOD = {"id": "t0", "family": "timed", "category": "timed_oneshot", "text": "5 seconds", "due": 6.3, "start": 6.1,
        "end": 7.3}  # fmt: skip


def _bundle(targets: object) -> dict:
    return {"id": "c", "tracks": [{"speaker": "A", "path": "A.wav"}, {"speaker": "B", "path": "B.wav"}],
            "targets": targets}  # fmt: skip


def test_targets_parse_round_trip_and_sort() -> None:
    later = {**GOOD, "id": "t1", "due": 9.0, "start": 9.0, "end": 10.0, "count": 2, "cycle_end": 9.0}
    conv = conversation_from_dict(_bundle([later, GOOD]), base="", origin="x", read_text=str)
    assert [t.id for t in conv.targets] == ["t0", "t1"] and conv.targets[1].count == 2
    assert "targets" not in conv.extra
    assert conversation_to_dict(conv)["targets"] == [GOOD, later]
    assert (
        make_target(id="a", family="cue", category="cue_colour", text="red", due_s=0.1)
        == parse_targets(
            [
                {
                    "id": "a",
                    "family": "cue",
                    "category": "cue_colour",
                    "text": "red",
                    "due": 0.1,
                    "start": 0.0,
                    "end": 1.1,
                }
            ]
        )[0]
    )


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"a": 1}, "must be a list"),
        ([{**GOOD, "start": 6.5}], "start <= due <= end"),
        ([{**GOOD, "due": "soon"}], "'due' must be a finite number"),
        ([{k: v for k, v in GOOD.items() if k != "category"}], "'category' must be a non-empty string"),
        ([GOOD, GOOD], "target ids repeat"),
        ([{**GOOD, "count": -1}], "'count' must be a non-negative integer"),
        ([{**GOOD, "colour": "red"}], "unknown field"),
    ],
)
def test_bad_targets_are_bundle_errors(targets: object, message: str) -> None:
    with pytest.raises(BundleError, match=message) as e:
        conversation_from_dict(_bundle(targets), base="", origin="x", read_text=str)
    assert e.value.kind == "bad_target"


def test_window_cut_clips_and_places_the_due_micro_turn() -> None:
    t = make_target(id="t", family="timed", category="timed_oneshot", text="now", due_s=3.05)  # window [2.85, 4.05]
    (first,) = window_targets([t], output_speaker="m", first=0, stop=15, total=50)  # [0, 3.0) s
    assert (first.due_microturn, first.start_microturn, first.end_microturn) == (None, 14, 15)
    (second,) = window_targets([t], output_speaker="m", first=15, stop=30, total=50)  # [3.0, 6.0) s
    assert (second.due_microturn, second.start_microturn, second.end_microturn) == (0, 0, 6)
    assert second.due_s == pytest.approx(0.05) and second.start_s == pytest.approx(-0.15)
    assert window_targets([t], output_speaker="m", first=30, stop=45, total=50) == ()
    other = make_target(id="o", family="timed", category="timed_oneshot", text="now", due_s=3.05, speaker="x")
    assert window_targets([other], output_speaker="m", first=15, stop=30, total=50) == ()


def test_a_target_starting_on_the_window_end_belongs_to_the_next_window() -> None:
    """Window bounds come from integer samples (schemas.units.microturn_start_s): micro-turn 3 starts at 0.6 s exactly,
    not at 3 * 0.2 = 0.6000000000000001 s, so a target starting at 0.6 s is not also cut into the window [0, 3)."""
    (t,) = parse_targets([{**GOOD, "id": "b", "due": 0.8, "start": 0.6, "end": 1.0}])
    assert window_targets([t], output_speaker="m", first=0, stop=3, total=10) == ()
    (nxt,) = window_targets([t], output_speaker="m", first=3, stop=6, total=10)
    assert (nxt.start_microturn, nxt.end_microturn, nxt.due_microturn) == (0, 2, 1)
    assert (nxt.start_s, nxt.due_s, nxt.end_s) == (0.0, 0.2, 0.4)


def _sample(targets: tuple[SampleTarget, ...] | None) -> MicroTurnSample:
    w = 10
    meta = SampleMeta(format_version=1, key="c_m_00000", conversation_id="c", conversation_key="c", perspective="m",
                      window=0, start_microturn=0, num_microturns=w, window_microturns=w, last_valid_samples=3200,
                      conversation_samples=w * 3200, speakers=SampleSpeakers(input="u", others=(), output="m"),
                      streams=("input", "output"), language="en", source="t", licence="CC0-1.0", split="train",
                      word_sources={}, tags={}, video=None, interruptions=())  # fmt: skip
    z = np.zeros((w, 16, 80), np.uint8)
    return MicroTurnSample(
        meta=meta, input_dmel=z, output_dmel=z, activity=np.zeros((w, 3), np.float32), labels=np.zeros(w, np.uint8),
        floor=np.full(w, -1, np.int16), mask=np.ones(w, np.uint8), targets=targets,
    )  # fmt: skip


def test_targets_member_round_trips_and_is_checked() -> None:
    t = make_target(id="t", family="cue", category="cue_colour", text="red", due_s=1.0)
    (st,) = window_targets([t], output_speaker="m", first=0, stop=10, total=10)
    members = _sample((st,)).to_members()
    assert MicroTurnSample.from_members(members).targets == (st,)
    assert "targets.json" not in _sample(None).to_members()  # no targets: no member, bytes as before
    bad = SampleTarget(**{**st.to_dict(), "end_microturn": 12})
    with pytest.raises(ValueError, match="outside 0..10"):
        MicroTurnSample.from_members(_sample((bad,)).to_members())
    assert target_to_dict(t)["start"] == pytest.approx(0.8)
