"""Offline demo data: short two-party English conversations synthesised with espeak-ng, as input bundles.

    python -c "from synth.demo import make_demo_bundles; print(make_demo_bundles('/tmp/microturn-demo'))"

Every conversation is scripted, spoken word by word (so each word's start and end are known to the sample) and
laid out so that the turn-taking events the pipeline labels (DESIGN.md §4) happen exactly where the generator says
they do. Each bundle directory holds ``bundle.json`` (words inline, ``source: "tts"``), the audio (``A.wav`` and
``B.wav``, 16-bit 22,050 Hz; one conversation instead has a single stereo ``both.flac`` with a channel map) and
``planted.json``::

    {"events": [{"type": "yield" | "backchannel" | "interruption" | "overlap", "by": "B", "of": "A",
                 "start_s": 3.21, "end_s": 4.02}, ...],
     "pauses": [{"speaker": "A", "start_s": 5.5, "end_s": 6.6}, ...]}

An event's ``start_s``/``end_s`` are the start and end of the inter-pausal unit (IPU) of ``by`` that makes it;
``of`` is the speaker who held the floor. A pause is a silence of >= 0.8 s inside one speaker's turn.

The rules the layout satisfies, with margins so that no threshold decides anything (IPU: one speaker's words
merged while the gap between them is < 0.3 s; floor: the first IPU's speaker, then as the events below move it;
for an IPU u of s while h holds the floor, m is h's IPU with the latest end among those starting before u):

- words of one utterance are 0.04-0.12 s apart; a within-turn pause is 0.85-1.3 s and changes nothing;
- backchannel: u has <= 2 words and lasts <= 0.9 s, starts >= 0.3 s into m, and h talks on >= 0.6 s after u;
- overlap (no floor change): u has >= 3 words, starts >= 0.3 s into m, and h talks on >= 0.7 s after u;
- interruption: u starts >= 0.15 s into m, while h talks; h's sentence is cut (remaining words dropped)
  0.32-0.6 s after u starts, and u goes on >= 0.3 s after h stops; the floor goes to s;
- yield: u starts 0.25-1.25 s after everyone has stopped; the floor goes to s;
- every event onset lies >= 15 ms from a multiple of 0.2 s, so its micro-turn cannot change by rounding;
- nothing else changes speaker.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth.bundle_writer import write_bundle
from synth.planner import BASE_RULES, TimelinePlanner, Utterance
from synth.timeline import Placement, Timeline
from synth.tts import TTSBackend, Voice

logger = logging.getLogger(__name__)

VOICES = (
    Voice(voice_id="A", engine_voice="en-us+m3", rate_wpm=160, pitch=30),
    Voice(voice_id="B", engine_voice="en+f3", rate_wpm=185, pitch=72),
)
"""A: American English, male variant, slower and low. B: British English (``en`` is espeak-ng's British voice;
``en-gb+f3`` silently ignores the variant in espeak-ng 1.51), female variant, faster and high."""

STEREO_INDEX = 2
"""The conversation (0-based) written as one stereo FLAC with a channel map instead of one WAV per speaker."""

# Script lines: "S: text" S speaks while holding (or, by a yield, taking) the floor; a line by the same speaker as
# the line before continues the turn after a pause. "|" inside a line is a within-turn pause.
# "S~ text" S backchannels during the previous line; "S> text" S talks over the previous line without taking
# the floor; "S! text" S interrupts the previous line and takes the floor (the rest of that line is dropped).
SCRIPTS: tuple[tuple[str, str], ...] = (
    (
        "trip",
        """
        A: so I was thinking about our trip
        B: where do you want to go
        A: up the coast | we could rent a little cabin by the beach for a week
        B~ mm-hmm
        B: that sounds lovely | I have not seen the ocean in years
        A> the ocean is great
        A: we should book it soon before the good places are gone
        B! wait can we check the dates first
        A: sure | I will look tonight
        """,
    ),
    (
        "recipe",
        """
        B: have you ever made bread at home
        A: no never | is it hard
        B: not really you mix flour and water and salt and let it rest overnight
        A~ yeah
        A: overnight is a lot of waiting
        B> it is worth it
        A: I would eat it all before it even cooled down
        B: me too honestly | you should try it
        A! I will bake some for the party on saturday
        B: good idea
        """,
    ),
    (
        "bug",
        """
        A: the build failed again this morning
        B: which part
        A: the parser tests | something about a missing file in the data folder
        B~ right
        B: I moved that folder yesterday because it was taking up so much space
        A~ okay
        A: can you put it back before the release tonight
        B> yes of course
        B: I can do it after lunch when the meeting is over
        A! actually could you do it now
        B: sure | give me five minutes
        """,
    ),
    (
        "moving",
        """
        B: are you still moving next week
        A: yes on tuesday | I have packed everything except the kitchen and the books
        B~ uh-huh
        B: do you need help with the heavy boxes on the day
        A> that would be great
        B: I can bring my brother too
        A: thank you | the van comes at nine and it is only booked for three hours
        B! nine is early but we will be there
        A: perfect
        """,
    ),
    (
        "game",
        """
        A: did you watch the game last night
        B: only the second half | was it good
        A: you missed the best part | they scored twice in the first ten minutes
        B~ oh wow
        A: and the crowd went completely wild after the second goal
        B> I heard about that
        B: I saw the last goal though | it was a long shot from outside the box
        A! and the keeper did not even move
        B: yeah | they should have changed him
        """,
    ),
)

DEMO_RULES: dict[str, Any] = {
    **BASE_RULES,
    "pause_s": (0.85, 1.3),  # a within-turn pause, and between a speaker's consecutive lines
    "yield_gap_s": (0.25, 1.2),  # silence before a turn change
    "overlap_after_s": 0.7,
    "cut_after_onset_s": (0.35, 0.6),  # an interrupted speaker stops this long after the onset
    "interrupt_slack_s": 0.0,  # (layouts: 2 onset margins)
    "interrupt_late_choices": True,  # the cut word is drawn from the last two thirds of the candidates
}
"""`synth.planner.BASE_RULES` plus the demo's own rules (seconds); see the module docstring."""


@dataclass(frozen=True, slots=True)
class _Line:
    kind: str  # ":", "~", ">", "!"
    speaker: str
    segments: tuple[tuple[str, ...], ...]


def _parse(script: str) -> list[_Line]:
    lines = []
    for raw in script.strip().splitlines():
        raw = raw.strip()
        if not raw:
            continue
        speaker, kind, text = raw[0], raw[1], raw[2:]
        if kind not in ":~>!" or not text.startswith(" "):
            raise ValueError(f"script line {raw!r}: expected 'S: ...', 'S~ ...', 'S> ...' or 'S! ...'")
        segments = tuple(tuple(seg.split()) for seg in text.split("|"))
        if any(not seg for seg in segments):
            raise ValueError(f"script line {raw!r} has an empty segment")
        lines.append(_Line(kind=kind, speaker=speaker, segments=segments))
    return lines


@dataclass(kw_only=True)
class _Utterance(Utterance):
    """One laid-out script line; `attached` once a talk-over or an interruption is placed on it."""

    attached: bool = False


class _ScriptPlanner(TimelinePlanner):
    """Lays out a script line by line; the floor and the line that holds it are tracked here."""

    def __init__(self, backend: TTSBackend, voices: dict[str, Voice], rng: random.Random) -> None:
        super().__init__(dict.fromkeys(voices, backend), voices, rng, DEMO_RULES)
        self.placements: list[Placement] = []
        self.pauses: list[dict[str, Any]] = []
        self.floor: str | None = None
        self.host: _Utterance | None = None
        self.last_end: dict[str, int] = {}

    def layout(self, speaker: str, segments: Sequence[Sequence[str]], start: int) -> _Utterance:
        u = self.speak(speaker, segments, start, pause_key="pause_s")
        return _Utterance(speaker=u.speaker, words=u.words, ipus=u.ipus, pauses=u.pauses)

    def end(self) -> int:
        ends = [p.end_sample for p in self.placements]
        if self.host is not None:
            ends.append(self.host.end)
        return max(ends, default=0)

    def flush(self) -> None:
        if self.host is None:
            return
        self.placements.extend(self.host.words)
        self.pauses.extend(
            {"speaker": self.host.speaker, "start_s": self.seconds(a), "end_s": self.seconds(b)}
            for a, b in self.host.pauses
        )
        self.last_end[self.host.speaker] = self.host.end
        self.host = None

    # --- script lines ------------------------------------------------------------------------------------
    def line(self, line: _Line) -> None:
        if line.kind == ":":
            self.floor_line(line)
            return
        host = self.host
        if host is None or host.speaker != self.floor or host.speaker == line.speaker or host.attached:
            raise ValueError(
                f"script line by {line.speaker} ({line.kind!r}) must follow a line of the other "
                f"speaker that nothing else is attached to"
            )
        host.attached = True
        if line.kind == "!":
            self.interruption(line, host)
        else:
            self.talk_over(line, host)

    def floor_line(self, line: _Line) -> None:
        s = line.speaker
        if self.floor is None:
            utt = self.layout(s, line.segments, self.uniform("lead_in_s"))
            self.floor = s
        elif s == self.floor:
            assert self.host is not None and self.host.speaker == s
            start = self.host.end + self.uniform("pause_s")
            self.host.pauses.append((self.host.end, start))
            self.flush()
            utt = self.layout(s, line.segments, start)
        else:
            start = self.off_grid(self.end() + self.uniform("yield_gap_s"))
            self.flush()
            utt = self.layout(s, line.segments, start)
            self.event("yield", s, self.floor, utt)
            self.floor = s
        self.host = utt

    def talk_over(self, line: _Line, host: _Utterance) -> None:
        """A backchannel (~) or an overlap (>) inside one IPU of the host; the floor stays."""
        s = line.speaker
        if len(line.segments) != 1:
            raise ValueError(f"{s}'s {line.kind!r} line cannot contain a pause")
        probe = self.layout(s, line.segments, 0)
        length = probe.end
        n = len(probe.words)
        if line.kind == "~":
            kind, after = "backchannel", "backchannel_after_s"
            if n > 2 or length > self.samples(self.rules["backchannel_max_s"]):
                raise ValueError(
                    f"backchannel {line.segments} has {n} words and lasts {self.seconds(length):.2f} s; "
                    f"need <= 2 words and <= {self.rules['backchannel_max_s']} s"
                )
        else:
            kind, after = "overlap", "overlap_after_s"
            if n < 3:
                raise ValueError(f"overlap {line.segments} needs >= 3 words (fewer reads as a backchannel)")
        onset = self.talk_over_onset(host, length, self.last_end.get(s, 0), after)
        if onset is None:
            raise ValueError(f"no room for {s}'s {kind} {line.segments} inside {host.speaker}'s line: lengthen it")
        words = [
            Placement(speaker=s, text=p.text, audio=p.audio, start_sample=p.start_sample + onset) for p in probe.words
        ]
        utt = _Utterance(speaker=s, words=words, ipus=[(onset, onset + length, 0, n - 1)])
        self.placements.extend(utt.words)
        self.last_end[s] = utt.end
        self.event(kind, s, host.speaker, utt)

    def interruption(self, line: _Line, host: _Utterance) -> None:
        """s starts while the host talks; the host stops 0.32-0.6 s later (rest of the line dropped)."""
        s, h = line.speaker, host.speaker
        drawn = self.interrupt_onset(host, self.last_end.get(s, 0), self.rules["cut_after_onset_s"])
        if drawn is None:
            raise ValueError(f"no room for {s} to interrupt {h}'s line: lengthen it")
        onset, j = drawn
        stop = self.cut(host, j)
        self.flush()
        utt = self.layout(s, line.segments, onset)
        if utt.ipus[0][1] < stop + self.samples(self.rules["interrupter_after_s"]):
            raise ValueError(f"{s}'s interruption {line.segments[0]} is too short to outlast {h}: lengthen it")
        self.event("interruption", s, h, utt)
        self.floor = s
        self.host = utt


def plan_script(
    script: str, *, backend: TTSBackend, voices: Sequence[Voice] = VOICES, rng: random.Random
) -> tuple[Timeline, dict[str, list[dict[str, Any]]]]:
    """Speak and lay out one script (format: the comment above `SCRIPTS`).

    Args:
        script: the dialogue, one line per utterance.
        backend: the TTS engine; its rate is the tracks' rate.
        voices: one voice per script speaker, matched on ``voice_id``; track order follows this order.
        rng: all random choices (gaps, pauses, where talk-over and interruptions start) come from it.
    Returns:
        The timeline (tracks and words) and the planted ``{"events": [...], "pauses": [...]}``, sorted by start.
    Raises:
        ValueError: the script cannot be laid out under the rules (a line too short to host an event, ...).
    """
    by_id = {v.voice_id: v for v in voices}
    planner = _ScriptPlanner(backend, by_id, rng)
    for line in _parse(script):
        if line.speaker not in by_id:
            raise ValueError(f"script speaker {line.speaker!r} has no voice (voices: {sorted(by_id)})")
        planner.line(line)
    planner.flush()
    timeline = planner.timeline(planner.placements, [v.voice_id for v in voices])
    events = planner.planted_events()
    pauses = sorted(planner.pauses, key=lambda p: (p["start_s"], p["speaker"]))
    return timeline, {"events": events, "pauses": pauses}


def make_demo_bundles(
    out_dir: str | Path, *, count: int = 5, seed: int = 0, backend: TTSBackend | None = None
) -> list[Path]:
    """Write `count` demo conversations as input bundles under `out_dir`, one directory each.

    Args:
        out_dir: parent directory; created if missing. Conversation ``i`` goes to ``out_dir/demo-{i+1:04d}``
            (existing files there are overwritten).
        count: number of conversations; scripts repeat (with other timings) beyond ``len(SCRIPTS)``.
        seed: everything random derives from it: the same seed gives byte-identical files.
        backend: TTS engine; default `synth.espeak.EspeakBackend` (needs the espeak-ng program).
    Returns:
        The bundle directories, in order.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if backend is None:
        from synth.espeak import EspeakBackend

        backend = EspeakBackend()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dirs = []
    for i in range(count):
        title, script = SCRIPTS[(seed + i) % len(SCRIPTS)]
        rng = random.Random(seed * 100_003 + i)
        timeline, planted = plan_script(script, backend=backend, voices=VOICES, rng=rng)
        conv_id = f"demo-{i + 1:04d}"
        bundle_dir = out / conv_id
        write_bundle(
            bundle_dir,
            conv_id=conv_id,
            timeline=timeline,
            planted=planted,
            source="microturn-demo",
            stereo=i == STEREO_INDEX,
            extra={
                "synth": {
                    "engine": backend.name,
                    "script": title,
                    "seed": seed,
                    "voices": {v.voice_id: v.engine_voice for v in VOICES},
                }
            },
        )
        logger.info(
            "wrote %s (%s, %.1f s, %d words, %d events)",
            bundle_dir,
            title,
            timeline.duration_s,
            len(timeline.words),
            len(planted["events"]),
        )
        dirs.append(bundle_dir)
    return dirs
