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
import random
from collections.abc import Mapping
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


def is_gander_file(path: str | Path) -> bool:
    """Whether the first non-empty line of a JSONL file is a Gander conversation."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    return is_gander(json.loads(line))
                except json.JSONDecodeError:
                    return False
    return False


def _cut(spec: Mapping[str, Any], base: Path) -> tuple[np.ndarray, int] | str:
    """The [start_ms, end_ms) stretch of an audio_in / speech_out file as float32 mono and its rate, or the path
    when the file cannot be read."""
    path = Path(spec["path"]) if Path(spec["path"]).is_absolute() else base / spec["path"]
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


def gander_to_bundle(obj: Mapping[str, Any], out_dir: Path, *, base: Path, backend: TTSBackend | None) -> Path:
    """Write one Gander conversation as a bundle directory; returns its bundle.json path."""
    conv_id = str(obj.get("id") or obj.get("conversation_id"))
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces: dict[str, list[tuple[float, np.ndarray, int]]] = {USER: [], AGENT: []}
    missing: dict[str, str] = {}
    words: list[Word] = []
    events: list[dict[str, Any]] = []
    last_call = None
    tts_rng = random.Random(0)
    for turn in obj["turns"]:
        role = turn.get("role")
        start_s = float(turn.get("start_ms", 0)) / 1000
        end_s = float(turn.get("end_ms", turn.get("start_ms", 0))) / 1000
        events += _events_of(turn, last_call)
        for call in turn.get("tool_calls") or []:
            last_call = str(call["name"])
        if role not in (USER, AGENT):
            continue
        spec = turn.get("audio_in") if role == USER else turn.get("speech_out")
        text = str((turn.get("meta") or {}).get("transcript") or turn.get("text") or "")
        if spec:
            cut = _cut(spec, base)
            if isinstance(cut, str):
                missing.setdefault(role, cut)
            else:
                pieces[role].append((start_s, *cut))
            words += _timed_words(turn, role) or _spread(text, start_s, end_s, role)
        elif role == AGENT and text.strip():
            if backend is None:
                from synth.espeak import EspeakBackend

                backend = EspeakBackend()
            from synth.planner import BASE_RULES, TimelinePlanner

            planner = TimelinePlanner({AGENT: backend}, {AGENT: TTS_VOICE}, tts_rng, BASE_RULES)
            u = planner.speak(AGENT, [text.split()], 0)
            audio = np.zeros(u.end, np.float32)
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
            pieces[AGENT].append((start_s, audio, backend.sample_rate_hz))
        elif role == USER:
            missing.setdefault(USER, f"(turn at {turn.get('start_ms')} ms has no audio_in)")
    tracks = []
    end_s = max([float(t.get("end_ms", 0)) / 1000 for t in obj["turns"]] + [e["time_s"] + 0.2 for e in events])
    for speaker in (USER, AGENT):
        if speaker in missing:
            tracks.append({"speaker": speaker, "path": missing[speaker]})
            continue
        rate = max((r for _, _, r in pieces[speaker]), default=16_000)
        length = int(math.ceil(end_s * rate)) + 1
        for start, x, r in pieces[speaker]:
            length = max(length, int(round(start * rate)) + len(_resample(x, r, rate)))
        track = np.zeros(length, np.float32)
        for start, x, r in pieces[speaker]:
            y = _resample(x, r, rate)
            a = int(round(start * rate))
            track[a : a + len(y)] += y
        sf.write(out_dir / f"{speaker}.wav", pcm16(track), rate, subtype="PCM_16", format="WAV")
        tracks.append({"speaker": speaker, "path": f"{speaker}.wav"})
    bundle = {
        "bundle_version": 1,
        "id": conv_id,
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
            for w in sorted(words, key=lambda w: (w.start_s, w.speaker))
        ],
        "model_speakers": [AGENT],
        "tags": {"format": "gander"},
        "events": sorted(events, key=lambda e: e["time_s"]),
    }
    for w in bundle["words"]:
        if w["score"] is None:
            del w["score"]
    write_json(out_dir / "bundle.json", bundle)
    return out_dir / "bundle.json"


def import_gander(path: str | Path, out_dir: str | Path, *, backend: TTSBackend | None = None) -> list[Path]:
    """Every conversation of a Gander JSONL file as a bundle under `out_dir` (one directory per line, named by the
    sanitised id). Audio paths are relative to the JSONL file's directory unless absolute.

    Raises:
        ValueError: a line that is not JSON or not a Gander conversation (names the line).
    """
    src = Path(path)
    out = Path(out_dir)
    written = []
    for i, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{src}:{i}: not JSON: {e}") from None
        if not is_gander(obj):
            raise ValueError(f"{src}:{i}: not a Gander conversation (needs a 'turns' list)")
        obj.setdefault("id", f"{src.stem}-{i}")
        written.append(gander_to_bundle(obj, out / sanitise_id(str(obj["id"])), base=src.parent, backend=backend))
    return written


def import_gander_main(argv: list[str]) -> int:
    """`microturn import gander FILE.jsonl --out BUNDLES_DIR`."""
    import argparse

    parser = argparse.ArgumentParser(prog="microturn import gander", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="Gander JSONL file (one conversation per line)")
    parser.add_argument("--out", required=True, help="directory for the bundles")
    args = parser.parse_args(argv)
    written = import_gander(args.input, args.out)
    print(f"wrote {len(written)} bundles to {args.out}; next: microturn run --input {args.out} --output DATASET")
    return 0
