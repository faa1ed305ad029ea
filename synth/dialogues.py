"""Two-party conversations with real turn-taking cues, as input bundles (`microturn synth dialogues`).

    python -c "from synth.dialogues import make_dialogues; print(make_dialogues('/tmp/dlg', n=2, seed=0))"
    microturn synth dialogues --out /tmp/dlg --n 20 --seed 0 --split heldout --cues none

Each conversation: two voices of `synth.engines.VOICE_BANK` (train or held-out pool), one topic of
`synth.grammar` (train or held-out topics, content words disjoint), turns of one or more *chunks* (inter-pausal
units) of clauses. Every clause is one engine call with its punctuation (falling '.', rising '?', continuation ','),
its words' spans from the engine (``synth.engines``); clauses are never built from isolated words.

Cues (``--cues``):
- ``natural``: a chunk before a within-turn pause ends in an incomplete clause on a function word, spoken with
  continuation prosody ("we could take the," ... pause ... "boat out on sunday."), and with ``pause_filler_p`` a
  filled pause after it ("we could take the, um," ...; Clark & Fox Tree 2002: uh/um announce a delay, not an end);
  a chunk before a yield ends in a complete statement ('.') or a question ('?'). Interruptions are competitive
  incomings, louder than the speaker's other speech while they overlap (``interrupt_gain_db``; French & Local 1983:
  "turn-competitive incomings" are high and loud), backchannels softer (``backchannel_gain_db``).
- ``none`` (the control): every chunk is drawn by the same procedure, whole sentences ending in '.', whatever
  follows it, no filled pause before a pause, every utterance at one level; only the silence's length tells a yield
  from a pause.

Timing (every distribution is a `DialogueConfig` field, a CLI flag, and written into each bundle and recipe.json):
yields after a gap drawn from ``yield_gap_s`` (or, with ``yield_overlap_p``, starting ``yield_overlap_s`` before the
other stops: labelled an interruption by DESIGN.md §4, planted as such with ``intent: overlapped_yield``);
within-turn pauses of ``pause_s``; backchannels (<= 2 words) and overlaps (>= 3 words, no floor change) inside the
host's long chunks; interruptions at a random word of the host, who stops ``interrupt_stop_s`` after the onset
(the rest of the turn dropped). Event onsets keep ``onset_margin_s`` from the 0.2 s grid.

Bundle: ``DIR/<id>/{bundle.json, planted.json, A.wav, B.wav}`` (16 kHz, 16-bit, written by synth.bundle_writer);
``planted.json`` = ``{"events": [{"type", "by", "of", "start_s", "end_s", ...}], "pauses": [...], "chunks": [...]}``
where an event's times are the IPU of ``by`` that makes it and every chunk records its text, final punctuation and
what follows it (``pause``, ``yield``, ``interrupted``, ``end``; an interrupted chunk's text is the words kept and its
``final`` is ``cut``). ``DIR/recipe.json`` holds the recipe.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from schemas.bundle import Word
from schemas.config_flags import setting
from synth import grammar
from synth.bundle_writer import write_bundle, write_json
from synth.engines import OUT_RATE_HZ, VOICE_BANK, VOICES_BY_NAME, Synthesiser, VoiceSpec
from synth.timeline import Timeline
from synth.tts import MAX_PEAK

logger = logging.getLogger(__name__)

DEFAULT_HELDOUT_VOICES = ("es-029-m2", "es-wm-f5", "fl-kal16", "fl-rms", "fe-ked")
"""Voices that ``--split train`` never uses (and ``--split heldout`` uses only)."""

SPLITS = ("train", "heldout")
Cast = tuple[tuple[str, float], tuple[str, float]]
"""One conversation's voices: (voice name, speaking-rate factor) of speaker A, then of B."""
CUES = ("natural", "none")
RECIPE_VERSION = 2
"""2: filled pauses before pauses, louder interruptions, softer backchannels (natural cues); stops 0.2-0.6 s."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogueConfig:
    """Every distribution of the generator; (lo, hi) pairs are uniform ranges, ``_p`` fields probabilities."""

    duration_s: tuple[float, float] = setting((40.0, 60.0), "conversation length target (s): turns are added until it")
    lead_in_s: tuple[float, float] = setting((0.3, 0.8), "silence before the first word (s)")
    tail_s: float = setting(0.5, "silence after the last word (s)")
    clause_gap_s: tuple[float, float] = setting((0.03, 0.12), "gap between the clauses of one chunk (s)")
    yield_gap_s: tuple[float, float] = setting((0.1, 0.6), "silence between one turn's end and the next's start (s)")
    yield_overlap_p: float = setting(0.12, "probability that the next turn starts before the last one ends")
    yield_overlap_s: tuple[float, float] = setting((0.05, 0.3), "how early it then starts (s)")
    pause_s: tuple[float, float] = setting((0.4, 1.5), "within-turn pause (s)")
    long_turn_p: float = setting(0.55, "probability that a turn has within-turn pauses")
    pauses_per_long_turn: tuple[int, int] = setting((1, 2), "within-turn pauses of a long turn (count range)")
    sentences_per_chunk: tuple[int, int] = setting((1, 1), "sentences per chunk (count range)")
    question_p: float = setting(0.35, "probability that a turn ends in a question (natural cues)")
    filler_p: float = setting(0.2, "probability that a chunk starts with a filler (um, well, ...)")
    pause_filler_p: float = setting(0.5, "probability that a chunk before a within-turn pause ends in um/uh (natural)")
    backchannel_p: float = setting(0.5, "probability of a listener backchannel in each long enough chunk of the host")
    backchannel_host_min_s: float = setting(1.8, "a chunk hosts a backchannel only if at least this long (s)")
    backchannel_after_s: float = setting(0.6, "the host talks on at least this long after a backchannel (s)")
    backchannel_max_s: float = setting(0.9, "a backchannel lasts at most this long (s)")
    backchannel_gain_db: float = setting(
        -6.0, "level of a backchannel against the speaker's other speech (dB; natural)"
    )
    overlap_p: float = setting(0.25, "probability of a listener talk-over (>= 3 words, no floor change) per chunk")
    overlap_host_min_s: float = setting(2.5, "a chunk hosts a talk-over only if at least this long (s)")
    overlap_after_s: float = setting(0.7, "the host talks on at least this long after a talk-over (s)")
    into_host_s: float = setting(0.3, "a talk-over or interruption starts at least this far into the host's chunk (s)")
    own_gap_s: float = setting(0.5, "one speaker's separate utterances stay at least this far apart (s)")
    interrupt_p: float = setting(0.12, "probability that a turn is interrupted by the next speaker")
    interrupt_stop_s: tuple[float, float] = setting(
        (0.2, 0.6), "the interrupted speaker stops this long after onset (s; overlaps resolve within 1-3 syllables)"
    )
    interrupt_gain_db: float = setting(
        6.0, "level of an interruption against the speaker's other speech until the other stops (dB; natural)"
    )
    interrupt_outlast_s: float = setting(0.3, "the interrupter talks on at least this long after the host stops (s)")
    boundary_tones: bool = setting(
        False,
        "give flite's and festival's clauses the final pitch movement of their punctuation (fall at '.', rise at "
        "'?', level at ','; synth.boundary_tone), which those engines do not make",
    )
    speed_perturb: tuple[float, float] = setting(
        (1.0, 1.0),
        "speed-perturbation factor of each speaker, drawn per conversation (pitch, formants and tempo together: "
        "training-voice augmentation; (1, 1): off)",
    )
    onset_margin_s: float = setting(0.01, "event onsets stay this far from every multiple of 0.2 s (s)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple) and (len(v) != 2 or v[0] > v[1]):
                raise ValueError(f"DialogueConfig.{f.name} must be (lo, hi) with lo <= hi, got {v}")
            if f.name.endswith("_p") and not 0.0 <= v <= 1.0:
                raise ValueError(f"DialogueConfig.{f.name} is a probability, got {v}")
        if not 0.5 <= self.speed_perturb[0] <= self.speed_perturb[1] <= 2.0:
            raise ValueError(f"DialogueConfig.speed_perturb must lie within [0.5, 2], got {self.speed_perturb}")
        if self.pause_s[0] <= 0.3 or self.clause_gap_s[1] >= 0.3:
            raise ValueError(
                f"pause_s {self.pause_s} must start above and clause_gap_s {self.clause_gap_s} stay below the "
                "pipeline's 0.3 s IPU gap, or pauses and chunks are not what the labels see"
            )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --- voices and topics -------------------------------------------------------------------------------------------


def voice_pool(split: str, holdout_voices: Sequence[str] = DEFAULT_HELDOUT_VOICES) -> tuple[VoiceSpec, ...]:
    """The voices of `split`: held-out ones for ``heldout``, all others for ``train``."""
    _check_split(split)
    unknown = [v for v in holdout_voices if v not in VOICES_BY_NAME]
    if unknown:
        raise ValueError(f"unknown voice(s) {unknown} in holdout_voices; known: {sorted(VOICES_BY_NAME)}")
    held = set(holdout_voices)
    pool = tuple(v for v in VOICE_BANK if (v.name in held) == (split == "heldout"))
    if len(pool) < 2:
        raise ValueError(f"split {split!r} has {len(pool)} voice(s) with holdout_voices={list(holdout_voices)}; need 2")
    return pool


def topic_pool(split: str) -> tuple[str, ...]:
    _check_split(split)
    return grammar.HELDOUT_TOPICS if split == "heldout" else grammar.TRAIN_TOPICS


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# --- text --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkText:
    clauses: tuple[str, ...]
    ends: str  # "pause" | "yield": what the plan puts after it (an interruption may still cut it)


def _sentence(rng: random.Random, topic: grammar.Topic, cues: str) -> list[str]:
    if cues == "none":  # same procedure everywhere; every sentence ends in '.'
        s = grammar.question(rng, topic) if rng.random() < 0.3 else grammar.statement(rng, topic)
        return [*s[:-1], s[-1].rstrip("?.") + "."]
    return grammar.statement(rng, topic)


def turn_text(
    rng: random.Random, topic: grammar.Topic, cues: str, cfg: DialogueConfig, *, answer: bool, interrupting: bool
) -> list[ChunkText]:
    """One turn as chunks. `answer`: the turn follows a question; `interrupting`: it starts over the other."""
    n_chunks = 1
    if rng.random() < cfg.long_turn_p:
        n_chunks += rng.randint(*cfg.pauses_per_long_turn)
    chunks: list[ChunkText] = []
    carry: list[str] = []  # the rest of a sentence cut before a pause
    for c in range(n_chunks):
        clauses: list[str] = list(carry)
        carry_len, carry = len(carry), []
        if c == 0 and interrupting:
            clauses.append(rng.choice(grammar.INTERRUPT_OPENERS))
        elif c == 0 and answer:
            clauses.append(grammar.answer_opener(rng))
        elif not clauses and rng.random() < cfg.filler_p:
            clauses.append(grammar.filler(rng))
        last = c == n_chunks - 1
        ask = cues == "natural" and last and rng.random() < cfg.question_p
        n_sent = rng.randint(*cfg.sentences_per_chunk) - (1 if carry_len else 0) - (1 if ask else 0)
        if n_sent <= 0 and not carry_len and not ask:
            n_sent = 1
        for _ in range(max(0, n_sent)):
            clauses += _sentence(rng, topic, cues)
        if cues == "natural":
            if ask:
                clauses += grammar.question(rng, topic)
            elif not last:
                head = grammar.split_incomplete(rng, _last_sentence(clauses))
                n_last = len(_last_sentence(clauses))
                if head is not None:
                    clauses = clauses[: len(clauses) - n_last] + head[0]
                    carry = head[1]
                    if rng.random() < cfg.pause_filler_p:
                        clauses.append(grammar.hesitation(rng))
                else:
                    clauses[-1] = clauses[-1].rstrip(".?") + ","
                    clauses.append(grammar.filler(rng))
        chunks.append(ChunkText(clauses=tuple(_join_fragments(clauses)), ends="yield" if last else "pause"))
    return chunks


def _last_sentence(clauses: list[str]) -> list[str]:
    """The trailing clauses after the last one ending in '.' or '?' (the sentence to cut)."""
    i = len(clauses) - 1
    while i > 0 and clauses[i - 1][-1] == ",":
        i -= 1
    # leading fillers/openers stay outside the sentence
    while i < len(clauses) - 1 and len(clauses[i].split()) <= 2 and clauses[i].endswith(","):
        i += 1
    return clauses[i:]


def _join_fragments(clauses: list[str]) -> list[str]:
    """A clause continuing a cut sentence has no punctuation of its own until the sentence's end: fine. Drop
    empties; a clause without final punctuation gets the next one's words (they are one clause)."""
    out: list[str] = []
    for c in clauses:
        c = c.strip()
        if not c:
            continue
        if out and out[-1][-1] not in ",.?":
            out[-1] = f"{out[-1]} {c}"
        else:
            out.append(c)
    if out and out[-1][-1] not in ",.?":
        out[-1] += "."
    return out


def chunk_final_class(chunk: ChunkText) -> str:
    """'.', '?' or ',': the intonation class the chunk ends with."""
    return chunk.clauses[-1][-1]


# --- audio layout ------------------------------------------------------------------------------------------------


def louder_until(audio: np.ndarray, gain_db: float, hold: int, release: int) -> np.ndarray:
    """`audio` with `gain_db` (dB) for its first `hold` samples, then back to 0 dB linearly over `release` samples;
    a soft limiter (slope 1 below half scale, never above MAX_PEAK) keeps a louder clip from clipping."""
    gain = np.ones(len(audio), np.float64)
    g = 10 ** (gain_db / 20)
    hold = min(hold, len(audio))
    gain[:hold] = g
    ramp = np.linspace(g, 1.0, release + 2)[1:-1][: len(audio) - hold]
    gain[hold : hold + len(ramp)] = ramp
    y = audio * gain
    knee, room = 0.5, MAX_PEAK - 0.5
    over = np.abs(y) > knee
    y[over] = np.sign(y[over]) * (knee + room * np.tanh((np.abs(y[over]) - knee) / room))
    return y.astype(np.float32)


@dataclass(kw_only=True)
class _Chunk:
    speaker: str
    text: ChunkText
    start: int
    audio: np.ndarray
    words: list[tuple[str, int, int]]  # relative to start
    ends: str = ""
    stop_word: int = -1  # last word kept (an interruption cuts here); -1: all

    @property
    def kept(self) -> list[tuple[str, int, int]]:
        return self.words if self.stop_word < 0 else self.words[: self.stop_word + 1]

    @property
    def end(self) -> int:
        return self.start + self.kept[-1][2]


@dataclass(kw_only=True)
class _Event:
    kind: str
    by: str
    of: str
    chunk: _Chunk
    extra: dict[str, Any] = field(default_factory=dict)


class _Conversation:
    def __init__(
        self,
        synth: Synthesiser,
        voices: dict[str, VoiceSpec],
        topic: grammar.Topic,
        cues: str,
        cfg: DialogueConfig,
        rng: random.Random,
    ) -> None:
        self.synth, self.voices, self.topic, self.cues, self.cfg, self.rng = synth, voices, topic, cues, cfg, rng
        self.turns: list[list[_Chunk]] = []
        self.talkovers: list[_Chunk] = []
        self.events: list[_Event] = []
        self.last_end: dict[str, int] = {s: -(10**9) for s in voices}

    def s(self, seconds: float) -> int:
        return int(round(seconds * OUT_RATE_HZ))

    def draw(self, lo_hi: tuple[float, float]) -> int:
        return self.s(self.rng.uniform(*lo_hi))

    def off_grid(self, sample: int) -> int:
        grid, margin = self.s(0.2), self.s(self.cfg.onset_margin_s)
        r = sample % grid
        if r < margin:
            return sample + margin - r
        if r > grid - margin:
            return sample + grid - r + margin
        return sample

    def synth_chunk(self, speaker: str, text: ChunkText) -> _Chunk:
        parts, words, t = [], [], 0
        for i, clause in enumerate(text.clauses):
            if i:
                gap = self.draw(self.cfg.clause_gap_s)
                parts.append(np.zeros(gap, np.float32))
                t += gap
            audio, spans = self.synth.clause(clause, self.voices[speaker], boundary_tone=self.cfg.boundary_tones)
            words += [(w.strip(",.?"), t + a, t + b) for w, (a, b) in zip(clause.split(), spans, strict=True)]
            parts.append(audio)
            t += len(audio)
        return _Chunk(speaker=speaker, text=text, start=0, audio=np.concatenate(parts), words=words)

    def lay_turn(self, speaker: str, chunks: list[ChunkText], onset: int) -> list[_Chunk]:
        out, t = [], onset
        for i, text in enumerate(chunks):
            if i:
                t = out[-1].end + self.draw(self.cfg.pause_s)
            c = self.synth_chunk(speaker, text)
            c.start, c.ends = t, text.ends
            out.append(c)
        return out

    def build(self) -> None:
        cfg, rng = self.cfg, self.rng
        speakers = list(self.voices)
        target = self.draw(cfg.duration_s)
        first = speakers[rng.randrange(2)]
        turn = self.lay_turn(
            first,
            turn_text(rng, self.topic, self.cues, cfg, answer=False, interrupting=False),
            self.off_grid(self.draw(cfg.lead_in_s)),
        )
        while True:
            host = turn
            h = host[0].speaker
            s = speakers[1 - speakers.index(h)]
            if host[-1].end >= target:
                host[-1].ends = "end"
                self.place_talkovers(host, s, limit=None)
                self.commit(host)
                break
            asked = chunk_final_class(host[-1].text) == "?"
            r = rng.random()
            nxt: list[_Chunk] | None = None
            if r < cfg.interrupt_p:
                nxt = self.try_interrupt(host, s)
            elif r < cfg.interrupt_p + cfg.yield_overlap_p:
                texts = turn_text(rng, self.topic, self.cues, cfg, answer=asked, interrupting=False)
                overlap = self.draw(cfg.yield_overlap_s)
                onset = self.off_grid(host[-1].end - overlap)
                cand = self.lay_turn(s, texts, onset)
                if (
                    cand[0].end - host[-1].end >= self.s(cfg.interrupt_outlast_s)
                    and onset >= host[-1].start + self.s(cfg.into_host_s)
                    and onset >= self.last_end[s] + self.s(cfg.own_gap_s)
                ):
                    nxt = cand
                    lat = round((host[-1].end - onset) / OUT_RATE_HZ, 6)
                    self.events.append(
                        _Event(
                            kind="interruption",
                            by=s,
                            of=h,
                            chunk=cand[0],
                            extra={"intent": "overlapped_yield", "stop_latency_s": lat},
                        )
                    )
                    host[-1].ends = "yield"
            if nxt is None:
                texts = turn_text(rng, self.topic, self.cues, cfg, answer=asked, interrupting=False)
                onset = self.off_grid(
                    max(host[-1].end + self.draw(cfg.yield_gap_s), self.last_end[s] + self.s(cfg.own_gap_s))
                )
                nxt = self.lay_turn(s, texts, onset)
                self.events.append(
                    _Event(
                        kind="yield",
                        by=s,
                        of=h,
                        chunk=nxt[0],
                        extra={"gap_s": round((onset - host[-1].end) / OUT_RATE_HZ, 6)},
                    )
                )
            self.place_talkovers(host, s, limit=nxt[0].start)
            self.commit(host)
            turn = nxt

    def try_interrupt(self, host: list[_Chunk], s: str) -> list[_Chunk] | None:
        """s interrupts host at a random word; host stops `interrupt_stop_s` after the onset. None: no room."""
        cfg, rng = self.cfg, self.rng
        latency = self.draw(cfg.interrupt_stop_s)
        words = [(ci, wi) for ci, c in enumerate(host) for wi in range(len(c.words))]
        cands = []
        for k, (ci, wi) in enumerate(words[:-1]):
            if k < 2:
                continue
            c = host[ci]
            onset = self.off_grid(c.start + c.words[wi][2] - latency)
            if onset >= c.start + self.s(cfg.into_host_s) and onset >= self.last_end[s] + self.s(cfg.own_gap_s):
                cands.append((ci, wi, onset))
        if not cands:
            return None
        ci, wi, onset = cands[rng.randrange(len(cands))]
        texts = turn_text(rng, self.topic, self.cues, cfg, answer=False, interrupting=True)
        nxt = self.lay_turn(s, texts, onset)
        stop = host[ci].start + host[ci].words[wi][2]
        if nxt[0].end - stop < self.s(cfg.interrupt_outlast_s):
            return None
        del host[ci + 1 :]
        host[ci].stop_word = wi
        host[ci].ends = "interrupted"
        if self.cues == "natural":
            nxt[0].audio = louder_until(nxt[0].audio, cfg.interrupt_gain_db, stop - onset + self.s(0.2), self.s(0.2))
        self.events.append(
            _Event(
                kind="interruption",
                by=s,
                of=host[0].speaker,
                chunk=nxt[0],
                extra={"intent": "interruption", "stop_latency_s": round((stop - onset) / OUT_RATE_HZ, 6)},
            )
        )
        return nxt

    def place_talkovers(self, host: list[_Chunk], s: str, limit: int | None) -> None:
        """Backchannels and overlaps by s inside host's chunks, ending >= own_gap before `limit` (s's next start)."""
        cfg, rng = self.cfg, self.rng
        for c in host:
            length_s = (c.end - c.start) / OUT_RATE_HZ
            r = rng.random()
            if length_s >= cfg.overlap_host_min_s and r < cfg.overlap_p:
                kind, text, after = "overlap", rng.choice(grammar.OVERLAPS), cfg.overlap_after_s
            elif length_s >= cfg.backchannel_host_min_s and r < cfg.overlap_p + cfg.backchannel_p:
                kind, text, after = "backchannel", rng.choice(grammar.BACKCHANNELS), cfg.backchannel_after_s
            else:
                continue
            u = self.synth_chunk(s, ChunkText(clauses=(text + ".",), ends=kind))
            n = len(u.audio)
            if kind == "backchannel" and n > self.s(cfg.backchannel_max_s):
                continue
            lo = max(c.start + self.s(cfg.into_host_s), self.last_end[s] + self.s(cfg.own_gap_s))
            hi = c.end - self.s(after) - n - 2 * self.s(cfg.onset_margin_s)
            if limit is not None:
                hi = min(hi, limit - self.s(cfg.own_gap_s) - n - 2 * self.s(cfg.onset_margin_s))
            if lo > hi:
                continue
            u.start, u.ends = self.off_grid(rng.randint(lo, hi)), kind
            if kind == "backchannel" and self.cues == "natural":
                u.audio = louder_until(u.audio, cfg.backchannel_gain_db, len(u.audio), 0)
            self.talkovers.append(u)
            self.last_end[s] = u.end
            self.events.append(_Event(kind=kind, by=s, of=c.speaker, chunk=u))

    def commit(self, turn: list[_Chunk]) -> None:
        self.turns.append(turn)
        self.last_end[turn[0].speaker] = turn[-1].end

    # --- result ------------------------------------------------------------------------------------------------
    def timeline(self) -> Timeline:
        chunks = [c for t in self.turns for c in t] + self.talkovers
        n = max(c.end for c in chunks) + self.s(self.cfg.tail_s)
        tracks = {sp: np.zeros(n, np.float32) for sp in self.voices}
        words = []
        for c in chunks:
            end_rel = c.kept[-1][2]
            tracks[c.speaker][c.start : c.start + end_rel] += c.audio[:end_rel]
            words += [
                Word(
                    text=w,
                    start_s=(c.start + a) / OUT_RATE_HZ,
                    end_s=(c.start + b) / OUT_RATE_HZ,
                    speaker=c.speaker,
                    source="tts",
                )
                for w, a, b in c.kept
            ]
        words.sort(key=lambda w: (w.start_s, w.end_s, w.speaker))
        return Timeline(tracks=tracks, words=tuple(words), sample_rate_hz=OUT_RATE_HZ, num_samples=n)

    def planted(self) -> dict[str, Any]:
        sec = lambda x: x / OUT_RATE_HZ  # noqa: E731
        events = [
            {
                "type": e.kind,
                "by": e.by,
                "of": e.of,
                "start_s": sec(e.chunk.start),
                "end_s": sec(e.chunk.end),
                **e.extra,
            }
            for e in self.events
        ]
        pauses, chunks = [], []
        for turn in self.turns:
            for a, b in itertools.pairwise(turn):
                pauses.append(
                    {
                        "speaker": a.speaker,
                        "start_s": sec(a.end),
                        "end_s": sec(b.start),
                        "final": chunk_final_class(a.text),
                    }
                )
            for c in turn:
                chunks.append(
                    {
                        "speaker": c.speaker,
                        "start_s": sec(c.start),
                        "end_s": sec(c.end),
                        "ends": c.ends,
                        "final": "cut" if c.ends == "interrupted" else chunk_final_class(c.text),
                        "planned_final": chunk_final_class(c.text),
                        "text": " ".join(c.text.clauses) if c.stop_word < 0 else " ".join(w for w, _, _ in c.kept),
                    }
                )
        return {
            "events": sorted(events, key=lambda e: (e["start_s"], e["by"])),
            "pauses": sorted(pauses, key=lambda p: (p["start_s"], p["speaker"])),
            "chunks": sorted(chunks, key=lambda c: (c["start_s"], c["speaker"])),
        }


# --- API and CLI ---------------------------------------------------------------------------------------------------


def recipe(
    *, seed: int, split: str, cues: str, config: DialogueConfig, holdout_voices: Sequence[str]
) -> dict[str, Any]:
    """Everything that decides the data set, as written to recipe.json and each bundle's ``extra.synth``."""
    return {
        "generator": "microturn synth dialogues",
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "split": split,
        "cues": cues,
        "config": config.to_dict(),
        "voices": [v.to_dict() for v in voice_pool(split, holdout_voices)],
        "holdout_voices": list(holdout_voices),
        "topics": list(topic_pool(split)),
        "sample_rate_hz": OUT_RATE_HZ,
    }


def _check_request(n: int, cues: str, casts: Sequence[Cast] | None) -> None:
    """make_dialogues' arguments that no conversation could be made with: a ValueError saying which."""
    if cues not in CUES:
        raise ValueError(f"cues must be one of {CUES}, got {cues!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if casts is not None:
        if len(casts) != n:
            raise ValueError(f"casts gives {len(casts)} conversations' voices, but n is {n}")
        unknown = sorted({name for cast in casts for name, _ in cast} - set(VOICES_BY_NAME))
        if unknown:
            raise ValueError(f"unknown voice(s) {unknown} in casts; known: {sorted(VOICES_BY_NAME)}")


def _collect(done_tasks: Iterator[dict[str, Any]], n: int, progress: bool, t0: float) -> tuple[dict[int, Path], float]:
    """The finished conversations' directories by index and their audio seconds in all; a progress line on stderr
    every 10 conversations with `progress`; a RuntimeError carrying the worker's traceback for a failed one."""
    audio_s = 0.0
    results: dict[int, Path] = {}
    for done, res in enumerate(done_tasks, start=1):
        if "error" in res:
            raise RuntimeError(f"conversation {res['i']} failed:\n{res['error']}")
        results[res["i"]] = Path(res["path"])
        audio_s += res["duration_s"]
        if progress and (done % 10 == 0 or done == n):
            el = time.perf_counter() - t0
            print(f"  {done}/{n} conversations, {audio_s / 3600:.2f} h of audio, {el:.0f} s", file=sys.stderr)
    return results, audio_s


def make_dialogues(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    split: str = "train",
    cues: str = "natural",
    config: DialogueConfig | None = None,
    holdout_voices: Sequence[str] = DEFAULT_HELDOUT_VOICES,
    start_index: int = 0,
    progress: bool = False,
    workers: int = 1,
    stats: dict[str, float] | None = None,
    casts: Sequence[Cast] | None = None,
) -> list[Path]:
    """Write `n` conversations as input bundles under `out_dir` (plus ``recipe.json``); return their directories.

    Args:
        out_dir: created if missing; conversation i goes to ``out_dir/dlg-{split}-s{seed}-{i:05d}``.
        n: number of conversations.
        seed: everything random derives from (seed, split, i): the same arguments give byte-identical files.
        split: ``train`` or ``heldout``: voices (`voice_pool`) and topics (`grammar.HELDOUT_TOPICS`) disjoint.
        cues: ``natural`` or ``none`` (the control; see the module docstring).
        config: the distributions (default `DialogueConfig()`).
        holdout_voices: the voices ``train`` never uses.
        start_index: first conversation index (to extend a set, or to split work over processes).
        progress: print a progress line to stderr every 10 conversations.
        workers: processes generating conversations at once (the output does not depend on it).
        casts: if given, conversation ``start_index + k`` is spoken by ``casts[k]`` (one (voice name, speaking-rate
            factor) pair per speaker A, B; any voice of `VOICE_BANK`, whatever the split; `VoiceSpec.at_rate`)
            instead of two voices drawn from the split's pool; written to ``extra.synth.speaker_rates``.
        stats: if given, filled with ``conversations``, ``seconds`` (wall), ``audio_s``, ``conversations_per_s`` and
            ``audio_hours_per_s``.
    """
    _check_request(n, cues, casts)
    cfg = config or DialogueConfig()
    rec = recipe(seed=seed, split=split, cues=cues, config=cfg, holdout_voices=holdout_voices)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "recipe.json", rec)
    tasks = [
        {
            "out": str(out),
            "i": i,
            "seed": seed,
            "split": split,
            "cues": cues,
            "config": cfg.to_dict(),
            "holdout_voices": list(holdout_voices),
            "recipe": rec,
            "cast": None if casts is None else [list(c) for c in casts[i - start_index]],
        }
        for i in range(start_index, start_index + n)
    ]
    t0 = time.perf_counter()
    results, audio_s = _collect(_fork_each(tasks, workers), n, progress, t0)
    el = time.perf_counter() - t0
    logger.info("wrote %d conversations (%.2f h) in %.1f s", n, audio_s / 3600, el)
    if stats is not None:
        stats.update(
            conversations=n,
            seconds=el,
            audio_s=audio_s,
            conversations_per_s=n / el,
            audio_hours_per_s=audio_s / 3600 / el,
        )
    return [results[i] for i in sorted(results)]


def rate_casts(per_voice: int, rates: Sequence[float], seed: int = 0) -> list[Cast]:
    """Casts (`make_dialogues`) in which every voice of `VOICE_BANK` speaks in at least `per_voice` conversations at
    each speaking-rate factor of `rates`: per rate, the voices in a shuffled order (seeded by `seed` and the rate)
    taken two by two, round and round, ceil(len(VOICE_BANK) * per_voice / 2) conversations.

    Raises:
        ValueError: `per_voice` < 1, no rates, or a rate that is not > 0.
    """
    if per_voice < 1 or not rates or not all(r > 0 for r in rates):
        raise ValueError(f"need per_voice >= 1 and rates > 0, got per_voice={per_voice}, rates={list(rates)}")
    names = [v.name for v in VOICE_BANK]
    casts: list[Cast] = []
    for rate in rates:
        order = names[:]
        random.Random(f"microturn-rate-casts:{seed}:{rate}").shuffle(order)
        for j in range(-(-len(names) * per_voice // 2)):
            a, b = order[(2 * j) % len(order)], order[(2 * j + 1) % len(order)]
            casts.append(((a, float(rate)), (b, float(rate))))
    return casts


def _fork_each(tasks: list[dict], workers: int):  # noqa: ANN202 - an iterator of result dicts
    """Run each task in its own process forked from one helper that has loaded no engine.

    libespeak-ng keeps state from one utterance to the next (voicing flutter, leading silence), so only a fresh
    engine makes a conversation's bytes depend on nothing but (seed, split, index). The helper is a new interpreter
    (``python -m synth.dialogues --serve``), so this works whatever the caller's process has done.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "synth.dialogues", "--serve", str(max(1, workers))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(t) + "\n" for t in tasks))
    proc.stdin.close()
    count = 0
    for line in proc.stdout:
        count += 1
        yield json.loads(line)
    if proc.wait() != 0 or count != len(tasks):
        raise RuntimeError(f"the dialogue helper exited {proc.returncode} after {count} of {len(tasks)} conversations")


_LOADED: Synthesiser | None = None
"""The helper's engines, loaded before it forks (each child gets them fresh, as loaded, never spoken with)."""


def _serve(workers: int) -> None:
    """The helper: read tasks (JSON lines) from stdin, fork one child per task (at most `workers` at once); each
    child writes one JSON line to stdout."""
    tasks = [json.loads(line) for line in sys.stdin if line.strip()]
    global _LOADED
    _LOADED = Synthesiser().load()
    running: set[int] = set()
    failed = 0
    for task in tasks:
        while len(running) >= workers:
            pid, status = os.wait()
            running.discard(pid)
            failed += status != 0
        pid = os.fork()
        if pid == 0:
            try:
                path, duration = _one_conversation(task)
                msg = {"i": task["i"], "path": str(path), "duration_s": duration}
                code = 0
            except Exception:  # noqa: BLE001 - reported to the parent, which raises
                msg, code = {"i": task["i"], "error": traceback.format_exc()}, 1
            os.write(1, (json.dumps(msg) + "\n").encode())
            os._exit(code)
        running.add(pid)
    while running:
        pid, status = os.wait()
        running.discard(pid)
        failed += status != 0
    sys.exit(1 if failed else 0)


def _one_conversation(task: dict) -> tuple[Path, float]:
    out, i, seed, split, cues = Path(task["out"]), task["i"], task["seed"], task["split"], task["cues"]
    cfg = DialogueConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in task["config"].items()})
    pool, topics = voice_pool(split, task["holdout_voices"]), topic_pool(split)
    rng = random.Random(f"microturn-dialogues:{seed}:{split}:{i}")
    va, vb = rng.sample(pool, 2)
    rates = None
    if task.get("cast"):  # drawn all the same, so that every later draw is as without a cast
        (name_a, rate_a), (name_b, rate_b) = task["cast"]
        va, vb = VOICES_BY_NAME[name_a].at_rate(rate_a), VOICES_BY_NAME[name_b].at_rate(rate_b)
        rates = {"A": rate_a, "B": rate_b}
    topic = grammar.TOPICS[rng.choice(topics)]
    speeds = None
    if cfg.speed_perturb != (1.0, 1.0):  # its own stream, so that every other draw is as without it
        srng = random.Random(f"microturn-dialogues-speed:{seed}:{split}:{i}")
        speeds = {"A": round(srng.uniform(*cfg.speed_perturb), 3), "B": round(srng.uniform(*cfg.speed_perturb), 3)}
        va, vb = va.at_speed(speeds["A"]), vb.at_speed(speeds["B"])
    synth = _LOADED if _LOADED is not None else Synthesiser()
    conv = _Conversation(synth, {"A": va, "B": vb}, topic, cues, cfg, rng)
    try:
        conv.build()
    finally:
        synth.close()
    timeline = conv.timeline()
    conv_id = f"dlg-{split}-s{seed}-{i:05d}"
    rec = task["recipe"]
    write_bundle(
        out / conv_id,
        conv_id=conv_id,
        timeline=timeline,
        planted=conv.planted(),
        source="microturn-dialogues",
        tags={"split": split, "cues": cues, "topic": topic.name},
        split=split,  # the split hint: "heldout" conversations say so, as their tags do
        extra={
            "synth": {
                **rec,
                "index": i,
                "topic": topic.name,
                "speaker_voices": {"A": va.name, "B": vb.name},
                **({"speaker_rates": rates} if rates is not None else {}),
                **({"speaker_speeds": speeds} if speeds is not None else {}),
            }
        },
    )
    return out / conv_id, timeline.duration_s


# the helper process of _fork_each; the command is `microturn synth dialogues` (cli/synth.py)
if __name__ == "__main__":
    if sys.argv[1:2] != ["--serve"]:
        sys.exit("usage: python -m synth.dialogues --serve WORKERS (a helper process; see `microturn synth dialogues`)")
    _serve(int(sys.argv[2]))
