import numpy as np

from pipeline.labels import (
    Ipu,
    LabelConfig,
    detect_events,
    ipus,
    overlap_intervals,
    perspective_interruptions,
    perspective_labels,
    turn_taking_counts,
)
from schemas.bundle import Word
from schemas.grid import Interval
from schemas.sample import LABEL_BITS, SampleInterruption

CFG = LabelConfig()
S = 16_000  # samples per second


def u(speaker: str, start: float, end: float, words: int | None = 3) -> Ipu:
    return Ipu(speaker=speaker, start=int(start * S), end=int(end * S), num_words=words)


def kinds(units: list[Ipu]) -> list[tuple[str, str, str]]:
    return [(e.kind, e.by, e.of) for e in detect_events(sorted(units, key=lambda x: (x.start, x.end)), CFG)]


def test_yield_backchannel_interruption_overlap() -> None:
    assert kinds([u("A", 0, 2), u("B", 2.5, 4)]) == [("yield", "B", "A")]
    assert kinds([u("A", 0, 4), u("B", 1, 1.5, words=1)]) == [("backchannel", "B", "A")]
    assert kinds([u("A", 0, 4), u("B", 1, 1.5, words=3)]) == [("overlap", "B", "A")]  # too many words
    assert kinds([u("A", 0, 4), u("B", 3.5, 6)]) == [("interruption", "B", "A")]
    # A goes on 2 s after B starts and B ends up with the floor: still an interruption (this was a "takeover" with
    # no label while a 1 s stop window existed, issue 13.4), with A's stop latency stored
    assert kinds([u("A", 0, 4), u("B", 2.0, 6)]) == [("interruption", "B", "A")]
    # after an interruption B holds the floor: A's short reply is then A's backchannel of B
    assert kinds([u("A", 0, 4), u("B", 3.5, 8), u("A", 5, 5.5, words=1)]) == [
        ("interruption", "B", "A"),
        ("backchannel", "A", "B"),
    ]


def test_ipus_join_words_across_short_gaps_and_count_them() -> None:
    words = [Word(text=t, start_s=s, end_s=s + 0.2, speaker="A") for t, s in (("a", 0.0), ("b", 0.3), ("c", 1.0))]
    units = ipus(["A"], words=words, segments=None, config=CFG)
    assert [(x.start, x.end, x.num_words) for x in units] == [(0, 8_000, 2), (16_000, 19_200, 1)]


def test_perspective_labels_and_time_to_floor_change() -> None:
    events = detect_events([u("A", 0, 1.0), u("B", 1.5, 3.0), u("A", 2.0, 2.3, words=1)], CFG)
    k = 20
    act_a = np.zeros(k, np.float32)
    act_a[:5] = 1
    act_b = np.zeros(k, np.float32)
    act_b[7:15] = 1
    labels, floor = perspective_labels(events, output_speaker="A", input_activity=act_b, output_activity=act_a)
    assert labels[7] & LABEL_BITS["yield_to_input"]  # B takes the turn at 1.5 s -> micro-turn 7
    assert labels[10] & LABEL_BITS["output_backchannel"]  # A's backchannel at 2.0 s
    assert floor[:8].tolist() == [7, 6, 5, 4, 3, 2, 1, 0] and (floor[8:] == -1).all()
    labels_b, _ = perspective_labels(events, output_speaker="B", input_activity=act_a, output_activity=act_b)
    assert labels_b[7] & LABEL_BITS["yield_to_output"] and labels_b[10] & LABEL_BITS["backchannel"]


def test_overlap_intervals() -> None:
    got = overlap_intervals(
        {"A": [Interval(start=0, end=100)], "B": [Interval(start=50, end=150)], "C": [Interval(start=200, end=300)]}
    )
    assert got == [Interval(start=50, end=100)]


def test_slow_yield_is_an_interruption_with_its_stop_latency() -> None:
    """The planted case of issue 13.4: the model stops 1.07 s after the user starts."""
    events = detect_events([u("A", 0, 2.57), u("B", 1.5, 4.0)], CFG)
    assert [(e.kind, e.by, e.of) for e in events] == [("interruption", "B", "A")]
    assert abs(events[0].stop_latency_s - 1.07) < 1e-3 and events[0].offset == -int(1.07 * S)
    fast = detect_events([u("A", 0, 1.8), u("B", 1.5, 4.0)], CFG)[0]
    assert fast.kind == "interruption" and abs(fast.stop_latency_s - 0.3) < 1e-3
    assert all(e.stop_latency_s is None for e in detect_events([u("A", 0, 2), u("B", 2.5, 4)], CFG))  # a yield
    k = 25
    assert perspective_interruptions(events, output_speaker="A", num_microturns=k) == [
        SampleInterruption(microturn=7, label="interruption", stop_latency_s=events[0].stop_latency_s)
    ]
    assert perspective_interruptions(events, output_speaker="B", num_microturns=k)[0].label == "output_interruption"
    counts = turn_taking_counts(events, [])
    assert counts["interruption_stop_latency_bins"] == {"5": 1} and counts["events"] == {"interruption": 1}


def test_label_config_reads_old_manifests() -> None:
    old = {**CFG.to_dict(), "interruption_window_s": 1.0}
    assert LabelConfig.from_dict(old) == CFG
