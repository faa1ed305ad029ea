"""The label stage: interaction labels from word timings and speech activity (DESIGN.md §4, definitions after
Full-Duplex-Bench), for the whole conversation (events) and for each of its perspectives (`label`).

    python -c "from pipeline.labels import LabelConfig; print(LabelConfig())"

Definitions (all thresholds in LabelConfig, written to the manifest):
- IPU (inter-pausal unit): one speaker's speech (words, or RTTM segments) joined across gaps < `ipu_gap_s`.
- Floor: the speaker of the first IPU holds it. IPUs are walked in (start, end, speaker) order; for an IPU u of a
  speaker s other than the floor holder h, with m = h's IPU with the latest end among those started before u:
  - backchannel (by s, of h): u lasts <= `backchannel_max_s`, has <= `backchannel_max_words` words (not checked
    without words), and h speaks through it: m.start < u.start and m.end > u.end. The floor stays with h.
  - interruption (by s, of h): h is speaking when s starts (m.end > u.start) and s goes on after h stops
    (u.end > m.end), however long h takes to stop; h's stop latency m.end - u.start (seconds) is stored with the
    event (`Event.stop_latency_s`) so that slow yields can be filtered or weighted. Floor -> s.
  - overlap (by s, of h): s talks over h, h goes on after u ends (m.end >= u.end): no floor change.
  - yield (by s, of h): h is silent when s starts (m.end <= u.start). Floor -> s.
- Events are placed at the micro-turn containing u's start. Floor transfer offset = u.start - m.end (s).

There is no stop-latency window any more: a "takeover" (h stopping more than `interruption_window_s`, 1 s, after
the onset) used to get no label, so the barge-ins a model most needs to learn from were lost. The retired key is
ignored when an old manifest's configuration is read (`LabelConfig.from_dict`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.event_windows import check_timeline, perspective_events
from pipeline.features import FeaturisedConversation
from pipeline.speakers import Roles
from schemas.bundle import Segment, Word
from schemas.config_flags import setting
from schemas.events import TimelineEvent
from schemas.grid import Interval, activity, merge, word_interval
from schemas.sample import LABEL_BITS, SampleInterruption
from schemas.units import (
    SAMPLE_RATE_HZ,
    SAMPLES_PER_MICROTURN,
    microturn_of_sample,
    num_microturns,
    seconds_to_samples,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelConfig:
    ipu_gap_s: float = setting(0.3, "seconds: a speaker's words closer than this form one utterance")
    backchannel_max_s: float = setting(1.0, "seconds: longest utterance that can be a backchannel")
    backchannel_max_words: int = setting(2, "words: most words in a backchannel")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LabelConfig:
        """The configuration a manifest recorded; keys retired since (`interruption_window_s`) are ignored."""
        return cls(**{k: v for k, v in values.items() if k not in RETIRED_KEYS})


RETIRED_KEYS = frozenset({"interruption_window_s"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Ipu:
    """One inter-pausal unit, in 16 kHz samples. `num_words` is None when it comes from segments."""

    speaker: str
    start: int
    end: int
    num_words: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A labelled moment: kind in backchannel | interruption | overlap | yield, at sample `start`.
    `offset` is the floor transfer offset in samples (u.start - m.end; negative = overlap). `stop_latency_s`, for
    an interruption only: seconds from the onset until the interrupted speaker stops (= -offset / 16 kHz)."""

    kind: str
    by: str
    of: str
    start: int
    offset: int
    stop_latency_s: float | None = None


FLOOR_CHANGES = ("interruption", "yield")


def ipus(
    speakers: Sequence[str], *, words: Sequence[Word] | None, segments: Sequence[Segment] | None, config: LabelConfig
) -> list[Ipu]:
    """Every speaker's IPUs, sorted by (start, end, speaker)."""
    gap = seconds_to_samples(config.ipu_gap_s)
    out = []
    for speaker in speakers:
        if words is not None:
            spans = [word_interval(w) for w in words if w.speaker == speaker]
        else:
            spans = [
                Interval(start=seconds_to_samples(s.start_s), end=seconds_to_samples(s.end_s))
                for s in segments or ()
                if s.speaker == speaker
            ]
        for iv in merge(spans, max_gap=gap):
            n = None if words is None else sum(1 for s in spans if iv.start <= s.start and s.end <= iv.end)
            out.append(Ipu(speaker=speaker, start=iv.start, end=iv.end, num_words=n))
    return sorted(out, key=lambda u: (u.start, u.end, u.speaker))


def detect_events(units: Sequence[Ipu], config: LabelConfig) -> list[Event]:
    """Walk the IPUs with the floor (see the module docstring) and return the events in order."""
    bc_max = seconds_to_samples(config.backchannel_max_s)
    latest: dict[str, Ipu] = {}  # each speaker's IPU with the latest end so far
    floor: str | None = None
    events = []
    for u in units:
        if floor is None:
            floor = u.speaker
        elif u.speaker != floor and floor in latest:
            m = latest[floor]
            short = u.end - u.start <= bc_max and (u.num_words is None or u.num_words <= config.backchannel_max_words)
            if m.end <= u.start:
                events.append(Event(kind="yield", by=u.speaker, of=floor, start=u.start, offset=u.start - m.end))
                floor = u.speaker
            elif short and m.start < u.start and m.end > u.end:
                events.append(Event(kind="backchannel", by=u.speaker, of=floor, start=u.start, offset=0))
            elif m.end >= u.end:
                events.append(Event(kind="overlap", by=u.speaker, of=floor, start=u.start, offset=0))
            else:
                events.append(
                    Event(
                        kind="interruption",
                        by=u.speaker,
                        of=floor,
                        start=u.start,
                        offset=u.start - m.end,
                        stop_latency_s=round((m.end - u.start) / SAMPLE_RATE_HZ, 6),
                    )
                )
                floor = u.speaker
        if u.speaker not in latest or u.end > latest[u.speaker].end:
            latest[u.speaker] = u
    return events


def perspective_labels(
    events: Sequence[Event], *, output_speaker: str, input_activity: np.ndarray, output_activity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-micro-turn labels for the perspective in which `output_speaker` plays the model.

    Args:
        input_activity: (K,) speech fraction of the whole input side (user and others).
        output_activity: (K,) speech fraction of the model.
    Returns:
        labels: uint8 (K,) bit mask of schemas.sample.LABEL_BITS;
        floor: int16 (K,) micro-turns until the next floor change between input and output side (0 at its onset,
        -1 when none follows).
    """
    k = len(output_activity)
    labels = np.zeros(k, dtype=np.uint8)
    labels[input_activity > 0] |= LABEL_BITS["input_speech"]
    labels[output_activity > 0] |= LABEL_BITS["output_speech"]
    changes = []
    for e in events:
        by_output, of_output = e.by == output_speaker, e.of == output_speaker
        if by_output == of_output:
            continue  # between two input-side parties
        name = {
            ("backchannel", False): "backchannel",
            ("backchannel", True): "output_backchannel",
            ("interruption", False): "interruption",
            ("interruption", True): "output_interruption",
            ("yield", False): "yield_to_input",
            ("yield", True): "yield_to_output",
        }.get((e.kind, by_output))
        mt = min(microturn_of_sample(e.start), k - 1)
        if name is not None:
            labels[mt] |= LABEL_BITS[name]
        if e.kind in FLOOR_CHANGES:
            changes.append(mt)
    floor = np.full(k, -1, dtype=np.int16)
    nxt = -1
    change_set = set(changes)
    for i in range(k - 1, -1, -1):
        if i in change_set:
            nxt = i
        if nxt >= 0:
            floor[i] = min(nxt - i, np.iinfo(np.int16).max)
    return labels, floor


def perspective_interruptions(
    events: Sequence[Event], *, output_speaker: str, num_microturns: int
) -> list[SampleInterruption]:
    """The interruptions between the input and the output side when `output_speaker` plays the model, in time order,
    at the conversation micro-turn of their onset (as in perspective_labels), with the interrupted side's stop
    latency in seconds."""
    out = []
    for e in events:
        if e.kind != "interruption" or (e.by == output_speaker) == (e.of == output_speaker):
            continue
        assert e.stop_latency_s is not None  # detect_events sets it on every interruption
        out.append(
            SampleInterruption(
                microturn=min(microturn_of_sample(e.start), num_microturns - 1),
                label="output_interruption" if e.by == output_speaker else "interruption",
                stop_latency_s=e.stop_latency_s,
            )
        )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PerspectiveLabels:
    """One perspective over the whole conversation (K micro-turns of 200 ms): its roles, labels and timeline."""

    roles: Roles  # who plays the model, who is the user, who is 'others'
    labels: np.ndarray  # uint8 (K,): LABEL_BITS per micro-turn (perspective_labels)
    floor: np.ndarray  # int16 (K,): micro-turns until the next floor change, -1 when none follows
    interruptions: tuple[SampleInterruption, ...]  # at conversation micro-turns, in time order
    events: tuple[TimelineEvent, ...] | None  # the bundle's events seen from the model; None without events


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledConversation:
    """A featurised conversation with its turn-taking events and each perspective's labels (the Label stage's
    output)."""

    featurised: FeaturisedConversation
    events: Sequence[Event]  # the conversation's events, in time order (detect_events)
    perspectives: tuple[PerspectiveLabels, ...]  # in featurised.roles order


def label(featurised: FeaturisedConversation, config: LabelConfig) -> LabelledConversation:
    """The conversation's events and each perspective's labels, floor, interruptions and timeline events.

    Raises:
        BundleError: kind bad_model_speakers, bad_event or bad_target (pipeline.event_windows.check_timeline).
    """
    aligned = featurised.aligned
    conv = aligned.conversation
    k_total = num_microturns(aligned.num_samples)
    check_timeline(conv, k_total)  # nothing of the bundle is dropped silently
    units = ipus(conv.speakers, words=conv.words, segments=conv.segments, config=config)
    events = detect_events(units, config)
    perspectives = []
    for roles in featurised.roles:
        labels, floor = perspective_labels(
            events,
            output_speaker=roles.output,
            input_activity=activity(
                merge([iv for s in (roles.user, *roles.others) for iv in aligned.speech[s]]), k_total
            ),
            output_activity=featurised.activity[roles.output],
        )
        interruptions = perspective_interruptions(events, output_speaker=roles.output, num_microturns=k_total)
        perspectives.append(
            PerspectiveLabels(
                roles=roles,
                labels=labels,
                floor=floor,
                interruptions=tuple(interruptions),
                events=perspective_events(conv, roles.output, k_total),
            )
        )
    return LabelledConversation(featurised=featurised, events=events, perspectives=tuple(perspectives))


def overlap_intervals(per_speaker: Mapping[str, Sequence[Interval]]) -> list[Interval]:
    """Stretches where two or more speakers talk at once."""
    points = sorted((p, d) for ivs in per_speaker.values() for iv in ivs for p, d in ((iv.start, 1), (iv.end, -1)))
    out, depth, start = [], 0, 0
    for p, d in points:
        if depth < 2 <= depth + d:
            start = p
        elif depth >= 2 > depth + d and p > start:
            out.append(Interval(start=start, end=p))
        depth += d
    return merge(out)


def turn_taking_counts(events: Sequence[Event], overlaps: Sequence[Interval]) -> dict:
    """Conversation-level turn-taking figures: floor transfer offsets, gaps and overlap durations in 200 ms bins
    (bin b covers [0.2 b, 0.2 (b+1)) s), the interrupted speakers' stop latencies in the same bins, and event counts.
    Summed over conversations by the job."""

    def bins(values_samples: Sequence[int]) -> dict[str, int]:
        counts = Counter(int(np.floor(v / SAMPLES_PER_MICROTURN)) for v in values_samples)
        return {str(b): n for b, n in sorted(counts.items())}

    offsets = [e.offset for e in events if e.kind in FLOOR_CHANGES]
    return {
        "floor_transfer_offset_bins": bins(offsets),
        "gap_bins": bins([o for o in offsets if o >= 0]),
        "overlap_bins": bins([iv.end - iv.start for iv in overlaps]),
        "interruption_stop_latency_bins": bins([-e.offset for e in events if e.kind == "interruption"]),
        "events": dict(sorted(Counter(e.kind for e in events).items())),
    }
