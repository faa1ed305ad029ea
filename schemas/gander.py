"""Gander's interaction JSONL: one conversation object per line, parsed and checked here (DESIGN.md §2, §8).

    python -c "from schemas.gander import is_gander; print(is_gander({'id': 'c', 'turns': []}))"

Gander (Omni-Interaction-Agent, Hunyuan team) writes one conversation per line: ``{"id", "turns": [...]}``, each
turn ``{"role": "user" | "assistant" | "tool", "start_ms", "end_ms", ...}`` on one conversation clock (ms):

- user: ``audio_in`` {path, sample_rate, start_ms, end_ms}: the stretch [start_ms, end_ms) of that file is placed at
  the turn's start_ms on the user track; ``text``; ``meta.transcript``, ``meta.word_timestamps`` [{word, start_ms,
  end_ms}] (conversation clock);
- assistant: ``text``; ``speech_out`` (same shape as audio_in) when its audio exists; ``tool_calls``
  [{name, arguments}] become events at the turn's end_ms (``time_ms`` on a call overrides it): Gander's task tools
  (task_start, task_send, task_resolve) keep their kind, any other name is a ``tool_call``;
- tool: ``tool_response``: {"type": "worker_delivery", "topic", "status", "task_name", "content"} (with
  ``meta.runtime_event: true`` when it arrives on its own) is a ``worker_delivery``; anything else is a
  ``tool_response`` of the tool named by the turn's ``name`` (or the last call). Both at the turn's start_ms.

Words without times (a transcript only) are spread evenly over the turn with ``score`` null and ``source``
"aligned" (times interpolated, as the align stage does for a word it cannot place).

Two readers share this format: the job's input adapter (pipeline/inputs/gander.py: audio pieces placed on the
conversation clock, an assistant turn without ``speech_out`` rejected) and ``microturn import gander``
(synth/gander_import.py: writes bundles, speaking such turns with espeak-ng). This module is pure: no audio, no
file system but `is_gander_file`'s sniffing of a local file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.bundle import Word, word_to_dict
from schemas.events import TASK_TOOLS

USER, AGENT = "user", "assistant"
"""Gander's two speaking roles, used as the speakers of a Gander conversation (the assistant plays the model)."""
SNIFF_LINES = 16
"""How many non-empty lines `is_gander_file` looks at for the first one that is a JSON object."""
SNIFF_BYTES = 16 * 1024 * 1024
"""Longest line `is_gander_file` reads (a longer one is skipped, not parsed)."""
MAX_CONVERSATION_S = 3600
"""Latest time a Gander conversation may have (seconds): its tracks are allocated for its whole length, so a
crafted ``end_ms`` must not ask for hundreds of GiB."""
EVENT_TAIL_S = 0.2
"""A conversation lasts at least this long (seconds, one micro-turn) after its last event, so the event is on it."""


class GanderError(ValueError):
    """A Gander line that cannot be read: the message says which turn or call and what is wrong."""


def is_gander(obj: Any) -> bool:
    """A Gander conversation object: has a ``turns`` list and no bundle ``tracks``."""
    return isinstance(obj, Mapping) and isinstance(obj.get("turns"), list) and "tracks" not in obj


def parse_line(raw: bytes) -> Any:
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
    """Whether a local JSONL file holds Gander conversations: the first line (of the first `SNIFF_LINES` non-empty
    ones) that is a JSON object decides. Lines that are not UTF-8 or not JSON (a 0xFF byte, deep nesting, a
    5,000-digit number) are skipped here: the reader of the file rejects them one by one."""
    seen = 0
    with open(path, "rb") as f:
        while seen < SNIFF_LINES and (raw := f.readline(SNIFF_BYTES)):
            if not raw.strip():
                continue
            seen += 1
            try:
                obj = parse_line(raw)
            except ValueError:
                continue
            if isinstance(obj, Mapping):
                return is_gander(obj)
    return False


def _ms(value: Any, what: str, *, optional: bool = False) -> None:
    """Refuse a time (ms) that is not a finite number in 0 .. MAX_CONVERSATION_S."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GanderError(f"{what} is not a finite number of ms: {value!r:.60}")
    if not 0 <= value <= MAX_CONVERSATION_S * 1000:
        raise GanderError(f"{what} is {value!r:.60} ms, outside 0 .. {MAX_CONVERSATION_S * 1000} ms")


def _check_words(turn: Mapping[str, Any], where: str) -> None:
    for k, w in enumerate((turn.get("meta") or {}).get("word_timestamps") or []):
        if not isinstance(w, Mapping):
            raise GanderError(f"{where} word_timestamps #{k} is not an object")
        _ms(w.get("start_ms"), f"{where} word #{k} start_ms")
        _ms(w.get("end_ms"), f"{where} word #{k} end_ms")
        if w["end_ms"] < w["start_ms"]:
            raise GanderError(f"{where} word #{k} ends before it starts")


def _check_calls(turn: Mapping[str, Any], where: str) -> None:
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
                args = parse_line(args.encode("utf-8", "surrogatepass"))
            except ValueError as e:
                raise GanderError(f"{where} tool call #{k} arguments: {e}") from None
        if args is not None and not isinstance(args, Mapping):
            raise GanderError(f"{where} tool call #{k} arguments is not a JSON object")


def check_conversation(obj: Mapping[str, Any]) -> None:
    """Refuse what reading the conversation would trip over: an id that is not a string, turns that are not
    objects, times that are not finite, negative, reversed or beyond `MAX_CONVERSATION_S`, tool calls without a
    ``name`` or with arguments that are not a JSON object, audio specs without a ``path``, meta that is not an
    object, no turns at all.

    Raises:
        GanderError: naming the turn (and call or word) and what is wrong.
    """
    if not isinstance(obj.get("id", ""), (str, int)):
        raise GanderError(f"'id' must be a string, got {type(obj['id']).__name__}")
    if not obj["turns"]:
        raise GanderError("the conversation has no turns")
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
        _check_words(turn, where)
        for key in ("audio_in", "speech_out"):
            spec = turn.get(key)
            if not spec:
                continue
            if not isinstance(spec, Mapping) or not isinstance(spec.get("path"), str) or not spec["path"]:
                raise GanderError(f"{where} {key} needs a 'path' string")
            _ms(spec.get("start_ms", 0), f"{where} {key} start_ms")
            _ms(spec.get("end_ms"), f"{where} {key} end_ms", optional=True)
        _check_calls(turn, where)


def spread_words(text: str, start_s: float, end_s: float, speaker: str) -> list[Word]:
    """The whitespace-separated tokens of `text`, spread evenly over [start_s, end_s) (seconds), score null and
    source "aligned"."""
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


def timed_words(turn: Mapping[str, Any], speaker: str) -> list[Word] | None:
    """A turn's ``meta.word_timestamps`` as words (seconds, source human); None when it has none."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SpokenTurn:
    """A user or assistant turn of a checked conversation: `index` in the turns list, times in seconds on the
    conversation clock, `text` (``meta.transcript`` or ``text``), and `audio`, the turn's ``audio_in`` (user) or
    ``speech_out`` (assistant) spec as given (None when it has none)."""

    index: int
    role: str
    start_s: float
    end_s: float
    text: str
    audio: Mapping[str, Any] | None
    turn: Mapping[str, Any]

    def words(self) -> list[Word]:
        """The turn's words, for a turn with audio: its word timestamps, else its text spread over the turn."""
        return timed_words(self.turn, self.role) or spread_words(self.text, self.start_s, self.end_s, self.role)


def spoken_turns(obj: Mapping[str, Any]) -> Iterator[SpokenTurn]:
    """The user and assistant turns of a conversation that passed `check_conversation`, in order."""
    for j, turn in enumerate(obj["turns"]):
        role = turn.get("role")
        if role not in (USER, AGENT):
            continue
        start_ms = float(turn.get("start_ms", 0))
        yield SpokenTurn(
            index=j,
            role=role,
            start_s=start_ms / 1000,
            end_s=float(turn.get("end_ms", start_ms)) / 1000,
            text=str((turn.get("meta") or {}).get("transcript") or turn.get("text") or ""),
            audio=(turn.get("audio_in") if role == USER else turn.get("speech_out")) or None,
            turn=turn,
        )


def piece_span_s(spec: Mapping[str, Any]) -> tuple[float, float | None]:
    """The stretch of its file an ``audio_in`` / ``speech_out`` spec names: (start, end or None for the file's end),
    seconds of the file."""
    end = spec.get("end_ms")
    return float(spec.get("start_ms", 0)) / 1000, None if end is None else float(end) / 1000


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


def conversation_events(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a checked conversation as bundle ``events`` entries (schemas/events.py; times in seconds),
    sorted by time."""
    events: list[dict[str, Any]] = []
    last_call = None
    for turn in obj["turns"]:
        events += _events_of(turn, last_call)
        for call in turn.get("tool_calls") or []:
            last_call = str(call["name"])
    return sorted(events, key=lambda e: e["time_s"])


def conversation_end_s(obj: Mapping[str, Any], events: list[dict[str, Any]]) -> float:
    """How long a checked conversation lasts at least (seconds): to its last turn's end and `EVENT_TAIL_S` past its
    last event."""
    ends = [float(t.get("end_ms", 0)) / 1000 for t in obj["turns"]]
    return max(ends + [e["time_s"] + EVENT_TAIL_S for e in events])


def conversation_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    """The bundle fields a Gander conversation gives: id (``id`` or ``conversation_id``), language, source (default
    gander), licence, split."""
    return {
        "id": str(obj.get("id") or obj.get("conversation_id")),
        "language": str(obj.get("language", "en")),
        "source": str(obj.get("source", "gander")),
        "licence": str(obj.get("licence", "unknown")),
        "split": str(obj.get("split", "train")),
    }


def bundle_object(
    obj: Mapping[str, Any], *, tracks: list[dict[str, Any]], words: list[Word], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """The bundle object (schemas/bundle.py) of a checked conversation: its fields, `tracks` as given, `words`
    sorted by (start, speaker), `events` (sorted, from `conversation_events`); the assistant plays the model."""
    return {
        "bundle_version": 1,
        **conversation_fields(obj),
        "tracks": tracks,
        "words": [word_to_dict(w) for w in sorted(words, key=lambda w: (w.start_s, w.speaker))],
        "model_speakers": [AGENT],
        "tags": {"format": "gander"},
        "events": events,
    }
