"""The timeline planner both conversation generators share: speak words, place talk-over and interruptions, log events.

    python -c "import random; from synth.espeak import EspeakBackend; from synth.tts import Voice; \
from synth.planner import *; p = TimelinePlanner({'A': EspeakBackend()}, {'A': Voice(voice_id='A', \
engine_voice='en-us')}, random.Random(0), BASE_RULES); u = p.speak('A', [['hello', 'there']], 0); \
print(p.timeline(u.words, ['A']).words)"

`synth.demo` (scripted two-party dialogues) and `synth.layouts` (refusal conversations) subclass `TimelinePlanner`
with their own floor bookkeeping; the mechanics are here: words spoken one by one on the sample clock
(`TimelinePlanner.speak`), where a backchannel or overlap can start inside a host's IPU (`talk_over_onset`), where
an interruption can start and where the host is then cut (`interrupt_onset`, `cut`), onsets kept off the 0.2 s
micro-turn grid (`off_grid`), and the planted events (`event`, `planted_events`).

The rules (seconds unless named otherwise) are one dict per generator: `BASE_RULES`, which both share, plus the
keys each adds (``DEMO_RULES`` in ``synth.demo``, ``RULES`` in ``synth.layouts``). Keys the planner itself reads:

- ``word_gap_s`` (lo, hi): gap between the words of one sentence;
- ``onset_margin_s``: how far an event onset stays from every multiple of 0.2 s;
- ``into_host_s``: a talk-over starts at least this far into the host's IPU;
- ``own_gap_s``: one speaker's speech stays at least this far apart (so talk-over never joins the speaker's IPUs);
- ``interrupt_into_host_s``: an interruption starts at least this far into the host's IPU;
- ``interrupt_min_words``: the host keeps at least this many words when interrupted (and drops >= 1);
- ``interrupt_slack_s``: an interruption onset is drawn at least this far before ``stop - cut_min``;
- ``interrupt_late_choices``: if true, the cut word is drawn only from the last two thirds of the candidates;
- ``tail_s``: silence after the last word;
- ``lead_in_s`` (lo, hi), ``backchannel_max_s``, ``backchannel_after_s``, ``interrupter_after_s``: read by the
  generators through `TimelinePlanner.uniform` and `TimelinePlanner.samples`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.units import MICROTURN_S
from synth.timeline import Placement, Timeline, place_words
from synth.tts import TTSBackend, Voice

BASE_RULES: dict[str, Any] = {
    "word_gap_s": (0.04, 0.12),
    "lead_in_s": (0.3, 0.6),
    "tail_s": 0.5,
    "onset_margin_s": 0.015,
    "into_host_s": 0.3,
    "backchannel_max_s": 0.9,
    "backchannel_after_s": 0.6,
    "interrupt_into_host_s": 0.15,
    "interrupt_min_words": 3,
    "interrupter_after_s": 0.3,
    "own_gap_s": 0.5,
}
"""The rules both generators share (see the module docstring); margins around the pipeline's label thresholds."""

Ipu = tuple[int, int, int, int]
"""(start sample, end sample, first word index, last word index) of one inter-pausal unit of an utterance."""


@dataclass(kw_only=True)
class Utterance:
    """One speaker's laid-out line or turn (all positions in samples).

    Attributes:
        speaker: who speaks.
        words: the placed words, in order.
        ipus: one `Ipu` per sentence (segment); a cut shortens them.
        pauses: (start, end) of the silences between the segments.
        interrupted: set by `TimelinePlanner.cut`.
    """

    speaker: str
    words: list[Placement]
    ipus: list[Ipu]
    pauses: list[tuple[int, int]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def start(self) -> int:
        return self.words[0].start_sample

    @property
    def end(self) -> int:
        return self.words[-1].end_sample


class TimelinePlanner:
    """Lays words out on one sample clock under `rules`; every random choice comes from `rng`, in a fixed order.

    Args:
        backends: TTS engine per speaker; all at one sample rate, which becomes the clock's.
        voices: voice per speaker.
        rng: the source of every random choice.
        rules: `BASE_RULES` plus the generator's own keys.
    Raises:
        ValueError: the backends' sample rates differ.
    """

    def __init__(
        self,
        backends: Mapping[str, TTSBackend],
        voices: Mapping[str, Voice],
        rng: random.Random,
        rules: Mapping[str, Any],
    ) -> None:
        rates = {s: b.sample_rate_hz for s, b in backends.items()}
        if len(set(rates.values())) != 1:
            raise ValueError(f"all speakers' TTS backends must share one sample rate, got {rates}")
        self.backends = backends
        self.voices = voices
        self.rng = rng
        self.rules = rules
        self.rate: int = next(iter(rates.values()))
        self.events: list[tuple[str, str, str, Utterance]] = []

    # --- units -------------------------------------------------------------------------------------------
    def samples(self, seconds: float) -> int:
        """`seconds` on the sample clock (rounded)."""
        return int(round(seconds * self.rate))

    def seconds(self, sample: int) -> float:
        return sample / self.rate

    def uniform(self, key: str) -> int:
        """A duration drawn uniformly from the rule `key`'s (lo, hi) seconds, in samples."""
        lo, hi = self.rules[key]
        return self.samples(self.rng.uniform(lo, hi))

    def off_grid(self, sample: int) -> int:
        """Move `sample` forward (by < 2 margins) until it is >= the margin away from every 0.2 s boundary."""
        margin = self.rules["onset_margin_s"]
        t = sample / self.rate
        k = round(t / MICROTURN_S)
        if abs(t - k * MICROTURN_S) < margin:
            sample = math.ceil((k * MICROTURN_S + margin) * self.rate)
        return sample

    # --- speech ------------------------------------------------------------------------------------------
    def speak(self, speaker: str, segments: Sequence[Sequence[str]], start: int, *, pause_key: str = "") -> Utterance:
        """Synthesise `segments` (lists of words) one word at a time from sample `start`: words ``word_gap_s``
        apart, segments separated by a pause drawn from the rule `pause_key` (each segment one IPU)."""
        backend, voice = self.backends[speaker], self.voices[speaker]
        words: list[Placement] = []
        ipus: list[Ipu] = []
        pauses: list[tuple[int, int]] = []
        t = start
        for s, segment in enumerate(segments):
            if s:
                pause = self.uniform(pause_key)
                pauses.append((t, t + pause))
                t += pause
            first = len(words)
            for i, text in enumerate(segment):
                if i:
                    t += self.uniform("word_gap_s")
                audio = backend.synthesize_word(text, voice)
                words.append(Placement(speaker=speaker, text=text, audio=audio, start_sample=t))
                t += len(audio)
            ipus.append((words[first].start_sample, t, first, len(words) - 1))
        return Utterance(speaker=speaker, words=words, ipus=ipus, pauses=pauses)

    def talk_over_onset(self, host: Utterance, length: int, own_end: int, after_key: str) -> int | None:
        """Where a talk-over of `length` samples starts inside one of `host`'s IPUs: >= ``into_host_s`` into it,
        >= ``own_gap_s`` after the talker's own last sample `own_end`, and the host talking on >= rule `after_key`
        seconds after it ends. None when no IPU has room."""
        slack = self.samples(2 * self.rules["onset_margin_s"])
        windows = []
        for start, end, _, _ in host.ipus:
            lo = max(start + self.samples(self.rules["into_host_s"]), own_end + self.samples(self.rules["own_gap_s"]))
            hi = end - self.samples(self.rules[after_key]) - length - slack
            if lo <= hi:
                windows.append((lo, hi))
        if not windows:
            return None
        lo, hi = self.rng.choice(windows)
        return self.off_grid(self.rng.randint(lo, hi))

    def interrupt_onset(self, host: Utterance, own_end: int, cut_s: tuple[float, float]) -> tuple[int, int] | None:
        """Where an interruption of `host` starts, and the index of the host's last word: the host stops at that
        word's end, ``cut_s`` (min, max seconds) after the onset. None when the host's words leave no room."""
        lo_cut, hi_cut = (self.samples(x) for x in cut_s)
        slack = self.samples(self.rules["interrupt_slack_s"])
        ipu_start = {i: start for start, _, first, last in host.ipus for i in range(first, last + 1)}
        own = own_end + self.samples(self.rules["own_gap_s"])
        choices = []
        for j in range(self.rules["interrupt_min_words"] - 1, len(host.words) - 1):  # keep >= min words, drop >= 1
            stop = host.words[j].end_sample
            lo = max(stop - hi_cut, ipu_start[j] + self.samples(self.rules["interrupt_into_host_s"]), own)
            hi = stop - lo_cut - slack
            if lo <= hi:
                choices.append((j, lo, hi))
        if not choices:
            return None
        if self.rules["interrupt_late_choices"]:
            choices = choices[len(choices) // 3 :]
        j, lo, hi = self.rng.choice(choices)
        return self.off_grid(self.rng.randint(lo, hi)), j

    @staticmethod
    def cut(host: Utterance, j: int) -> int:
        """Drop `host`'s words after word `j` (and the pauses and IPUs past it); returns where it now stops."""
        stop = host.words[j].end_sample
        host.words = host.words[: j + 1]
        host.pauses = [(a, b) for a, b in host.pauses if b <= stop]
        host.ipus = [(a, min(b, stop), first, min(last, j)) for a, b, first, last in host.ipus if first <= j]
        host.interrupted = True
        return stop

    # --- result ------------------------------------------------------------------------------------------
    def event(self, kind: str, by: str, of: str, u: Utterance) -> None:
        """Record an event made by u's first IPU; its times are read by `planted_events`, because a later
        interruption may still cut u short."""
        self.events.append((kind, by, of, u))

    def planted_events(self) -> list[dict[str, Any]]:
        """The events as ``{"type", "by", "of", "start_s", "end_s"}``, sorted by (start, by)."""
        out = []
        for kind, by, of, u in self.events:
            start, end = u.ipus[0][:2]
            out.append({"type": kind, "by": by, "of": of, "start_s": self.seconds(start), "end_s": self.seconds(end)})
        return sorted(out, key=lambda e: (e["start_s"], e["by"]))

    def timeline(self, placements: Sequence[Placement], speakers: Sequence[str]) -> Timeline:
        """The tracks (in `speakers` order) with ``tail_s`` of silence after the last word."""
        return place_words(
            placements, sample_rate_hz=self.rate, tail_samples=self.samples(self.rules["tail_s"]), speakers=speakers
        )
