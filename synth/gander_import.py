"""Gander JSONL conversations -> input bundles (speech missing for the assistant is synthesised with espeak-ng).

    microturn import gander conversations.jsonl --out bundles/

The format (turns, roles, times in ms, audio pieces, word timestamps, tool calls and responses as events) is read by
schemas/gander.py, which the job's own Gander input (pipeline/inputs/gander.py) shares. What this import adds: an
assistant turn with ``text`` but no ``speech_out`` is synthesised word by word with espeak-ng at the turn's start_ms
(words ``source: tts``, exact times), which the job cannot do (the pipeline must not import synth): run this, then
`microturn run --input bundles/`. Each role's pieces are mixed into one WAV per speaker.

A missing or unreadable audio file is not an error here: the bundle's track then names that file, and `microturn run`
rejects the conversation at decode with the file's name (kind missing_file), as for any bundle.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from schemas.bundle import Word, sanitise_id
from schemas.gander import (
    AGENT,
    MAX_CONVERSATION_S,
    USER,
    GanderError,
    bundle_object,
    check_conversation,
    conversation_end_s,
    conversation_events,
    is_gander,
    parse_line,
    piece_span_s,
    spoken_turns,
)
from synth.bundle_writer import pcm16, write_json
from synth.tts import TTSBackend, Voice

logger = logging.getLogger(__name__)
TTS_VOICE = Voice(voice_id=AGENT, engine_voice="en+f3", rate_wpm=180, pitch=70)


MAX_TRACK_RATE_HZ = 48_000
"""Rate of a written track at most (audio at a higher rate is resampled down to it)."""
MAX_RATE_HZ = 192_000
"""Highest sample rate of a Gander audio file that is read."""
MAX_AUDIO_VALUES = MAX_CONVERSATION_S * MAX_TRACK_RATE_HZ
"""Most values (frames x channels) of one Gander audio file that is read."""


def _inside(path: Path, root: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _cut(spec: Mapping[str, Any], base: Path, *, allow_outside: bool = False) -> tuple[np.ndarray, int] | str:
    """The [start_ms, end_ms) stretch of an audio_in / speech_out file as float32 mono and its rate, or the path
    when the file cannot be read or lies outside `base` (the Gander file's directory) without `allow_outside`: it is
    then never opened, and the bundle's track names it, so that the job rejects it (missing_file or
    path_outside_input) with its name."""
    path = Path(spec["path"]) if Path(spec["path"]).is_absolute() else base / spec["path"]
    if not allow_outside and not _inside(path, base):
        return str(path)
    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError, sf.LibsndfileError):
        return str(path)
    if not 0 < info.samplerate <= MAX_RATE_HZ or info.frames * info.channels > MAX_AUDIO_VALUES:
        raise GanderError(
            f"{path}: {info.frames} frames x {info.channels} channels at {info.samplerate} Hz is more than this import "
            f"reads (at most {MAX_RATE_HZ} Hz and {MAX_AUDIO_VALUES} values)"
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return str(path)
    mono = data.mean(axis=1)
    start_s, end_s = piece_span_s(spec)
    return mono[int(round(start_s * rate)) : len(mono) if end_s is None else int(round(end_s * rate))], rate


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(rate, to)
    return resample_poly(x, to // g, rate // g).astype(np.float32)


@dataclass
class _Turns:
    """What a conversation's turns give, gathered in turn order."""

    pieces: dict[str, list[tuple[float, np.ndarray, int]]]  # per role: (start s, float32 mono samples, rate Hz)
    missing: dict[str, str] = field(default_factory=dict)  # per role: the first path (or note) it has no audio for
    words: list[Word] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # bundle events entries, times in seconds, sorted


def _synthesise(text: str, start_s: float, backend: TTSBackend, rng: random.Random) -> tuple[np.ndarray, list[Word]]:
    """An assistant turn given as text only, spoken by `backend` from `start_s` (seconds): its float32 samples at
    backend.sample_rate_hz and its words (source tts)."""
    from synth.planner import BASE_RULES, TimelinePlanner

    planner = TimelinePlanner({AGENT: backend}, {AGENT: TTS_VOICE}, rng, BASE_RULES)
    u = planner.speak(AGENT, [text.split()], 0)
    audio = np.zeros(u.end, np.float32)
    words = []
    for w in u.words:
        audio[w.start_sample : w.end_sample] = w.audio
        words.append(
            Word(
                text=w.text,
                start_s=start_s + w.start_sample / backend.sample_rate_hz,
                end_s=start_s + w.end_sample / backend.sample_rate_hz,
                speaker=AGENT,
                source="tts",
            )
        )
    return audio, words


def _gather_turns(obj: Mapping[str, Any], *, base: Path, backend: TTSBackend | None, allow_outside: bool) -> _Turns:
    """Each turn's audio (cut from its file, or synthesised for an assistant turn with text only) and words, and
    the conversation's events; a role whose audio cannot be read is noted in `missing` with the path."""
    turns = _Turns(pieces={USER: [], AGENT: []}, events=conversation_events(obj))
    tts_rng = random.Random(0)
    for turn in spoken_turns(obj):
        role, start_s = turn.role, turn.start_s
        if turn.audio is not None:
            cut = _cut(turn.audio, base, allow_outside=allow_outside)
            if isinstance(cut, str):
                turns.missing.setdefault(role, cut)
            else:
                turns.pieces[role].append((start_s, *cut))
            turns.words += turn.words()
        elif role == AGENT and turn.text.strip():
            if backend is None:
                from synth.espeak import EspeakBackend

                backend = EspeakBackend()
            audio, words = _synthesise(turn.text, start_s, backend, tts_rng)
            turns.words += words
            turns.pieces[AGENT].append((start_s, audio, backend.sample_rate_hz))
        elif role == USER:
            turns.missing.setdefault(USER, f"(turn at {turn.turn.get('start_ms')} ms has no audio_in)")
    return turns


def _write_track(path: Path, pieces: list[tuple[float, np.ndarray, int]], end_s: float) -> None:
    """Mix a role's pieces ((start s, samples, rate Hz)) into one 16-bit WAV at their highest rate (at most
    MAX_TRACK_RATE_HZ; 16 kHz without pieces), at least `end_s` seconds long."""
    rate = min(max((r for _, _, r in pieces), default=16_000), MAX_TRACK_RATE_HZ)
    length = int(math.ceil(end_s * rate)) + 1
    for start, x, r in pieces:
        length = max(length, int(round(start * rate)) + len(_resample(x, r, rate)))
    track = np.zeros(length, np.float32)
    for start, x, r in pieces:
        y = _resample(x, r, rate)
        a = int(round(start * rate))
        track[a : a + len(y)] += y
    sf.write(path, pcm16(track), rate, subtype="PCM_16", format="WAV")


def gander_to_bundle(
    obj: Mapping[str, Any], out_dir: Path, *, base: Path, backend: TTSBackend | None, allow_outside: bool = False
) -> Path:
    """Write one Gander conversation as a bundle directory; returns its bundle.json path.

    Raises:
        GanderError: the conversation is malformed (`check_conversation`); nothing is written then.
    """
    check_conversation(obj)
    out_dir.mkdir(parents=True, exist_ok=True)
    turns = _gather_turns(obj, base=base, backend=backend, allow_outside=allow_outside)
    tracks = []
    end_s = conversation_end_s(obj, turns.events)
    for speaker in (USER, AGENT):
        if speaker in turns.missing:
            tracks.append({"speaker": speaker, "path": turns.missing[speaker]})
            continue
        _write_track(out_dir / f"{speaker}.wav", turns.pieces[speaker], end_s)
        tracks.append({"speaker": speaker, "path": f"{speaker}.wav"})
    write_json(out_dir / "bundle.json", bundle_object(obj, tracks=tracks, words=turns.words, events=turns.events))
    return out_dir / "bundle.json"


def import_gander(
    path: str | Path,
    out_dir: str | Path,
    *,
    backend: TTSBackend | None = None,
    allow_outside: bool = False,
    rejected: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Every conversation of a Gander JSONL file as a bundle under `out_dir` (one directory per line, named by the
    sanitised id). Audio paths are relative to the JSONL file's directory unless absolute; a path outside that
    directory is not read unless `allow_outside` (the bundle names it, and the job rejects it).

    A line that cannot be imported (not UTF-8, not JSON, not a Gander conversation, malformed turns or times, an
    id given before) is rejected on its own: logged as a warning and, when `rejected` is a list, appended to it as
    ``(FILE:LINE, reason)``; the other lines are imported.
    """
    src = Path(path)
    out = Path(out_dir)
    written: list[Path] = []
    seen: dict[str, str] = {}  # bundle directory name -> the line that wrote it
    for i, raw in enumerate(src.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        origin = f"{src}:{i}"
        target: Path | None = None
        try:
            obj = parse_line(raw)
            if not is_gander(obj):
                raise GanderError("not a Gander conversation (needs a 'turns' list and no 'tracks')")
            obj.setdefault("id", f"{src.stem}-{i}")
            check_conversation(obj)
            name = sanitise_id(str(obj["id"]))
            if name in seen:
                raise GanderError(f"duplicate id {str(obj['id'])!r:.80}, already given by {seen[name]}")
            seen[name] = origin
            target = None if (out / name).exists() else out / name  # removed again if the conversion fails
            written.append(
                gander_to_bundle(obj, out / name, base=src.parent, backend=backend, allow_outside=allow_outside)
            )
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, MemoryError) as e:
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
            reason = str(e) if isinstance(e, ValueError) else f"malformed conversation ({type(e).__name__}: {e})"
            logger.warning("rejected Gander line %s: %s", origin, reason)
            if rejected is not None:
                rejected.append((origin, reason))
    return written
