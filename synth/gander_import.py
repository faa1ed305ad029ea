"""Gander JSONL conversations -> input bundles (speech missing for the assistant is synthesised with espeak-ng).

    microturn import gander conversations.jsonl --out bundles/

Gander (Omni-Interaction-Agent, Hunyuan team) writes one conversation per line: ``{"id", "turns": [...]}``, each
turn ``{"role": "user" | "assistant" | "tool", "start_ms", "end_ms", ...}`` on one conversation clock (ms):

- user: ``audio_in`` {path, sample_rate, start_ms, end_ms}: the stretch [start_ms, end_ms) of that file is placed at
  the turn's start_ms on the user track; ``text``; ``meta.transcript``, ``meta.word_timestamps`` [{word, start_ms,
  end_ms}] (conversation clock);
- assistant: ``text``; ``speech_out`` (same shape as audio_in) when its audio exists, else the text is synthesised
  word by word with espeak-ng at the turn's start_ms (words ``source: tts``, exact times); ``tool_calls``
  [{name, arguments}] become events at the turn's end_ms (``time_ms`` on a call overrides it): Gander's task tools
  (task_start, task_send, task_resolve) keep their kind, any other name is a ``tool_call``;
- tool: ``tool_response``: {"type": "worker_delivery", "topic", "status", "task_name", "content"} (with
  ``meta.runtime_event: true`` when it arrives on its own) is a ``worker_delivery``; anything else is a
  ``tool_response`` of the tool named by the turn's ``name`` (or the last call). Both at the turn's start_ms.

Words without times (a transcript only) are spread evenly over the turn with ``score`` null and ``source``
"aligned" (times interpolated, as the align stage does for a word it cannot place). A missing or unreadable audio
file is not an error here: the bundle's track then names that file, and `microturn run` rejects the conversation
at decode with the file's name (kind missing_file), as for any bundle. Why here and not in pipeline/: synthesis
belongs to synth/ and the pipeline must not import it; `microturn run --input FILE.jsonl` on a Gander file runs this
import first (into OUTPUT/_gander_bundles) and then the job.
"""

from __future__ import annotations

import json
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
from schemas.events import TASK_TOOLS
from synth.bundle_writer import pcm16, write_json
from synth.tts import TTSBackend, Voice

logger = logging.getLogger(__name__)
USER, AGENT = "user", "assistant"
TTS_VOICE = Voice(voice_id=AGENT, engine_voice="en+f3", rate_wpm=180, pitch=70)


def is_gander(obj: Any) -> bool:
    """A Gander conversation object: has a ``turns`` list and no bundle ``tracks``."""
    return isinstance(obj, Mapping) and isinstance(obj.get("turns"), list) and "tracks" not in obj


SNIFF_LINES = 16
"""How many non-empty lines `is_gander_file` looks at for the first one that is a JSON object."""
SNIFF_BYTES = 16 * 1024 * 1024
"""Longest line `is_gander_file` reads (a longer one is skipped, not parsed)."""


def _parse_line(raw: bytes) -> Any:
    """One JSONL line; ValueError (naming what is wrong) for bytes that are not UTF-8, not JSON, nested too deep
    or holding a number too long to convert."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits (sys.set_int_max_str_digits)
        raise ValueError(f"not usable JSON: {e}") from None


def is_gander_file(path: str | Path) -> bool:
    """Whether a JSONL file holds Gander conversations: the first line (of the first `SNIFF_LINES` non-empty ones)
    that is a JSON object decides. Lines that are not UTF-8 or not JSON (a 0xFF byte, deep nesting, a 5,000-digit
    number) are skipped here: the reader of the file rejects them one by one."""
    seen = 0
    with open(path, "rb") as f:
        while seen < SNIFF_LINES and (raw := f.readline(SNIFF_BYTES)):
            if not raw.strip():
                continue
            seen += 1
            try:
                obj = _parse_line(raw)
            except ValueError:
                continue
            if isinstance(obj, Mapping):
                return is_gander(obj)
    return False


MAX_CONVERSATION_S = 3600
"""Latest time a Gander conversation may have: tracks are allocated for its whole length (at most 3600 s at
`MAX_TRACK_RATE_HZ`, 691 MB as float32), so a crafted ``end_ms`` must not ask for hundreds of GiB."""
MAX_TRACK_RATE_HZ = 48_000
"""Rate of a written track at most (audio at a higher rate is resampled down to it)."""
MAX_RATE_HZ = 192_000
"""Highest sample rate of a Gander audio file that is read."""
MAX_AUDIO_VALUES = MAX_CONVERSATION_S * MAX_TRACK_RATE_HZ
"""Most values (frames x channels) of one Gander audio file that is read."""


class GanderError(ValueError):
    """A Gander line that cannot be imported: the message says which turn or call and what is wrong."""


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
    a = int(round(float(spec.get("start_ms", 0)) * rate / 1000))
    b = len(mono) if spec.get("end_ms") is None else int(round(float(spec["end_ms"]) * rate / 1000))
    return mono[a:b], rate


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(rate, to)
    return resample_poly(x, to // g, rate // g).astype(np.float32)


def _spread(text: str, start_s: float, end_s: float, speaker: str) -> list[Word]:
    tokens = text.split()
    if not tokens:
        return []
    step = (end_s - start_s) / len(tokens)
    return [
        Word(
            text=t,
            start_s=start_s + i * step,
            end_s=start_s + (i + 1) * step,
            speaker=speaker,
            score=None,
            source="aligned",
        )
        for i, t in enumerate(tokens)
    ]


def _timed_words(turn: Mapping[str, Any], speaker: str) -> list[Word] | None:
    stamps = (turn.get("meta") or {}).get("word_timestamps")
    if not stamps:
        return None
    return [
        Word(
            text=str(w.get("word", w.get("text"))),
            start_s=float(w["start_ms"]) / 1000,
            end_s=float(w["end_ms"]) / 1000,
            speaker=speaker,
            source="human",
        )
        for w in stamps
    ]


def _events_of(turn: Mapping[str, Any], last_call: str | None) -> list[dict[str, Any]]:
    role = turn.get("role")
    out: list[dict[str, Any]] = []
    if role == AGENT:
        for call in turn.get("tool_calls") or []:
            name = str(call["name"])
            kind = name if name in TASK_TOOLS else "tool_call"
            t = float(call.get("time_ms", turn["end_ms"])) / 1000
            args = call.get("arguments") or {}
            if isinstance(args, str):
                args = json.loads(args)
            out.append({"kind": kind, "time_s": t, "name": name, "arguments": args, "speaker": AGENT})
    elif role == "tool":
        resp = turn.get("tool_response")
        t = float(turn["start_ms"]) / 1000
        if isinstance(resp, Mapping) and resp.get("type") == "worker_delivery":
            task = str(resp.get("task_name") or turn.get("name") or "task")
            event = {"kind": "worker_delivery", "time_s": t, "name": task, "task": task, "speaker": AGENT}
            event.update({k: resp[k] for k in ("topic", "status", "content") if resp.get(k) is not None})
            out.append(event)
        else:
            name = str(turn.get("name") or (resp.get("name") if isinstance(resp, Mapping) else None) or last_call)
            content = resp.get("content", resp) if isinstance(resp, Mapping) else resp
            out.append({"kind": "tool_response", "time_s": t, "name": name, "content": content, "speaker": AGENT})
    return out


def _ms(value: Any, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GanderError(f"{what} is not a finite number of ms: {value!r:.60}")
    if not 0 <= value <= MAX_CONVERSATION_S * 1000:
        raise GanderError(f"{what} is {value!r:.60} ms, outside 0 .. {MAX_CONVERSATION_S * 1000} ms")


def check_conversation(obj: Mapping[str, Any]) -> None:
    """Refuse what the conversion would trip over, before anything is written: turns that are not objects, times
    that are not finite, negative, reversed or beyond `MAX_CONVERSATION_S`, tool calls without a ``name`` or with
    arguments that are not a JSON object, audio specs without a ``path``, meta that is not an object.

    Raises:
        GanderError: naming the turn (and call or word) and what is wrong.
    """
    if not isinstance(obj.get("id", ""), (str, int)):
        raise GanderError(f"'id' must be a string, got {type(obj['id']).__name__}")
    for j, turn in enumerate(obj["turns"]):
        where = f"turn #{j}"
        if not isinstance(turn, Mapping):
            raise GanderError(f"{where} is not an object: {turn!r:.60}")
        _ms(turn.get("start_ms", 0), f"{where} start_ms")
        _ms(turn.get("end_ms"), f"{where} end_ms", optional=True)
        if turn.get("end_ms") is not None and turn["end_ms"] < turn.get("start_ms", 0):
            raise GanderError(f"{where} ends ({turn['end_ms']} ms) before it starts ({turn.get('start_ms', 0)} ms)")
        meta = turn.get("meta")
        if meta is not None and not isinstance(meta, Mapping):
            raise GanderError(f"{where} meta is not an object")
        for k, w in enumerate((meta or {}).get("word_timestamps") or []):
            if not isinstance(w, Mapping):
                raise GanderError(f"{where} word_timestamps #{k} is not an object")
            _ms(w.get("start_ms"), f"{where} word #{k} start_ms")
            _ms(w.get("end_ms"), f"{where} word #{k} end_ms")
            if w["end_ms"] < w["start_ms"]:
                raise GanderError(f"{where} word #{k} ends before it starts")
        for key in ("audio_in", "speech_out"):
            spec = turn.get(key)
            if not spec:
                continue
            if not isinstance(spec, Mapping) or not isinstance(spec.get("path"), str) or not spec["path"]:
                raise GanderError(f"{where} {key} needs a 'path' string")
            _ms(spec.get("start_ms", 0), f"{where} {key} start_ms")
            _ms(spec.get("end_ms"), f"{where} {key} end_ms", optional=True)
        calls = turn.get("tool_calls") or []
        if not isinstance(calls, list):
            raise GanderError(f"{where} tool_calls is not a list")
        for k, call in enumerate(calls):
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str) or not call["name"]:
                raise GanderError(f"{where} tool call #{k} has no 'name' string")
            _ms(call.get("time_ms", turn.get("end_ms", 0)), f"{where} tool call #{k} time_ms")
            args = call.get("arguments")
            if isinstance(args, str):
                try:
                    args = _parse_line(args.encode("utf-8", "surrogatepass"))
                except ValueError as e:
                    raise GanderError(f"{where} tool call #{k} arguments: {e}") from None
            if args is not None and not isinstance(args, Mapping):
                raise GanderError(f"{where} tool call #{k} arguments is not a JSON object")


@dataclass
class _Turns:
    """What a conversation's turns give, gathered in turn order."""

    pieces: dict[str, list[tuple[float, np.ndarray, int]]]  # per role: (start s, float32 mono samples, rate Hz)
    missing: dict[str, str] = field(default_factory=dict)  # per role: the first path (or note) it has no audio for
    words: list[Word] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # events.json entries, times in seconds


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
    """Each turn's events, audio (cut from its file, or synthesised for an assistant turn with text only) and
    words; a role whose audio cannot be read is noted in `missing` with the path."""
    turns = _Turns(pieces={USER: [], AGENT: []})
    last_call = None
    tts_rng = random.Random(0)
    for turn in obj["turns"]:
        role = turn.get("role")
        start_s = float(turn.get("start_ms", 0)) / 1000
        end_s = float(turn.get("end_ms", turn.get("start_ms", 0))) / 1000
        turns.events += _events_of(turn, last_call)
        for call in turn.get("tool_calls") or []:
            last_call = str(call["name"])
        if role not in (USER, AGENT):
            continue
        spec = turn.get("audio_in") if role == USER else turn.get("speech_out")
        text = str((turn.get("meta") or {}).get("transcript") or turn.get("text") or "")
        if spec:
            cut = _cut(spec, base, allow_outside=allow_outside)
            if isinstance(cut, str):
                turns.missing.setdefault(role, cut)
            else:
                turns.pieces[role].append((start_s, *cut))
            turns.words += _timed_words(turn, role) or _spread(text, start_s, end_s, role)
        elif role == AGENT and text.strip():
            if backend is None:
                from synth.espeak import EspeakBackend

                backend = EspeakBackend()
            audio, words = _synthesise(text, start_s, backend, tts_rng)
            turns.words += words
            turns.pieces[AGENT].append((start_s, audio, backend.sample_rate_hz))
        elif role == USER:
            turns.missing.setdefault(USER, f"(turn at {turn.get('start_ms')} ms has no audio_in)")
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


def _bundle(obj: Mapping[str, Any], tracks: list[dict[str, str]], turns: _Turns) -> dict[str, Any]:
    """bundle.json of the conversation: its fields, tracks, words sorted by (start, speaker), events by time."""
    bundle = {
        "bundle_version": 1,
        "id": str(obj.get("id") or obj.get("conversation_id")),
        "language": str(obj.get("language", "en")),
        "source": str(obj.get("source", "gander")),
        "licence": str(obj.get("licence", "unknown")),
        "split": str(obj.get("split", "train")),
        "tracks": tracks,
        "words": [
            {
                "text": w.text,
                "start": w.start_s,
                "end": w.end_s,
                "speaker": w.speaker,
                "score": w.score,
                "source": w.source,
            }
            for w in sorted(turns.words, key=lambda w: (w.start_s, w.speaker))
        ],
        "model_speakers": [AGENT],
        "tags": {"format": "gander"},
        "events": sorted(turns.events, key=lambda e: e["time_s"]),
    }
    for w in bundle["words"]:
        if w["score"] is None:
            del w["score"]
    return bundle


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
    end_s = max([float(t.get("end_ms", 0)) / 1000 for t in obj["turns"]] + [e["time_s"] + 0.2 for e in turns.events])
    for speaker in (USER, AGENT):
        if speaker in turns.missing:
            tracks.append({"speaker": speaker, "path": turns.missing[speaker]})
            continue
        _write_track(out_dir / f"{speaker}.wav", turns.pieces[speaker], end_s)
        tracks.append({"speaker": speaker, "path": f"{speaker}.wav"})
    write_json(out_dir / "bundle.json", _bundle(obj, tracks, turns))
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
            obj = _parse_line(raw)
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
