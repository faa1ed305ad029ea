"""A dataset back to Gander JSONL: one conversation per line, turns with audio paths, tool calls and deliveries.

    microturn export gander DATASET --out conversations.jsonl

Per conversation, the perspective that carries events (else the first) is read back window by window: its user
stream (``input``) and model stream (``output``) are written as ``OUT_DIR/audio/{conversation}_user.wav`` and
``_assistant.wav`` (16 kHz; from the ``input.flac`` / ``output.flac`` members, so the dataset must have been made
with ``--keep_audio``; with ``--text_only`` turns are written without audio paths instead: dMel is not audio).
A turn is a run of one stream's words with gaps < `TURN_GAP_S`; user turns carry ``audio_in`` {path, sample_rate,
start_ms, end_ms} (the same stretch of the WAV, which is on the conversation clock), assistant turns ``speech_out``
of the same shape, both ``meta.transcript`` and ``meta.word_timestamps``. Output-side events become assistant turns
at their time with ``tool_calls`` [{name, arguments}]; a worker_delivery becomes a tool turn with ``tool_response``
{type: worker_delivery, topic, status, task_name, content} and ``meta.runtime_event: true``; a tool_response a tool
turn with ``name`` and ``tool_response`` {content}. Times are ms on the conversation clock; an event's time is
kept to the ms (its micro-turn is what the dataset guarantees).
"""

from __future__ import annotations

import json
import os
from itertools import groupby
from typing import Any

import soundfile as sf

from schemas.checked_reader import iter_conversations
from schemas.paths import confined_join, safe_name
from schemas.units import SAMPLE_RATE_HZ

TURN_GAP_S = 0.6
"""Words of one stream closer than this belong to one turn."""


def _turns(words: list[dict[str, Any]], role: str, audio_key: str | None, wav: str | None) -> list[dict[str, Any]]:
    turns: list[list[dict[str, Any]]] = []
    for w in sorted(words, key=lambda w: w["start"]):
        if turns and w["start"] - turns[-1][-1]["end"] < TURN_GAP_S:
            turns[-1].append(w)
        else:
            turns.append([w])
    out = []
    for ws in turns:
        start_ms, end_ms = round(ws[0]["start"] * 1000), round(max(w["end"] for w in ws) * 1000)
        text = " ".join(w["text"] for w in ws)
        turn: dict[str, Any] = {"role": role, "start_ms": start_ms, "end_ms": end_ms, "text": text}
        if audio_key is not None:
            turn[audio_key] = {"path": wav, "sample_rate": SAMPLE_RATE_HZ, "start_ms": start_ms, "end_ms": end_ms}
        stamps = [
            {"word": w["text"], "start_ms": round(w["start"] * 1000), "end_ms": round(w["end"] * 1000)} for w in ws
        ]
        turn["meta"] = {"transcript": text, "word_timestamps": stamps}
        out.append(turn)
    return out


def _event_turn(e: dict[str, Any]) -> dict[str, Any]:
    t = round(e["abs_time_s"] * 1000)
    if e["side"] == "output":
        return {
            "role": "assistant",
            "start_ms": t,
            "end_ms": t,
            "text": "",
            "tool_calls": [{"name": e["name"], "arguments": e["arguments"] or {}}],
        }
    if e["kind"] == "worker_delivery":
        resp = {"type": "worker_delivery", "topic": e["topic"], "status": e["status"], "task_name": e["task"]}
        resp["content"] = e["content"]
        return {"role": "tool", "start_ms": t, "end_ms": t, "tool_response": resp, "meta": {"runtime_event": True}}
    return {"role": "tool", "start_ms": t, "end_ms": t, "name": e["name"], "tool_response": {"content": e["content"]}}


def export_gander(dataset: str, out_file: str, *, text_only: bool = False) -> int:
    """Write the dataset's conversations to `out_file` (audio next to it under ``audio/``); returns the number of
    conversations written.

    Raises:
        ValueError: the dataset has no raw audio members and `text_only` is False.
    """
    out_dir = os.path.dirname(os.path.abspath(out_file))
    lines = []
    for conv_key, group in groupby(iter_conversations(dataset), key=lambda c: c["meta.json"]["conversation_key"]):
        perspectives = {c["meta.json"]["perspective"]: c for c in group}
        chosen = next((p for p in sorted(perspectives) if perspectives[p]["events.json"]), None)
        conv = perspectives[chosen or sorted(perspectives)[0]]
        meta = conv["meta.json"]
        total = meta["conversation_samples"]
        wavs: dict[str, str | None] = {"input": None, "output": None}
        if not text_only:
            if "input.flac" not in conv or "output.flac" not in conv:
                raise ValueError(
                    f"{dataset}: samples have no raw audio; run the job with --keep_audio, or export --text_only"
                )
            os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)
            for stream, who in (("input", "user"), ("output", "assistant")):
                pcm = conv[f"{stream}.flac"][:total]
                rel = f"audio/{safe_name(conv_key)}_{who}.wav"
                sf.write(confined_join(out_dir, rel), pcm, SAMPLE_RATE_HZ, subtype="PCM_16")
                wavs[stream] = rel
        words: dict[str, list[dict[str, Any]]] = {"input": [], "output": []}
        for w in conv["words.json"]:
            if w["stream"] in words:
                words[w["stream"]].append({"text": w["text"], "start": w["start_s"], "end": w["end_s"]})
        events = [{**e, "abs_time_s": e["time_s"]} for e in conv["events.json"]]  # time_s: conversation seconds
        turns = _turns(words["input"], "user", None if text_only else "audio_in", wavs["input"])
        turns += _turns(words["output"], "assistant", None if text_only else "speech_out", wavs["output"])
        turns += [_event_turn(e) for e in events]
        turns.sort(key=lambda t: (t["start_ms"], t["role"] != "user"))
        lines.append(
            {
                "id": meta["conversation_id"],
                "language": meta["language"],
                "source": meta["source"],
                "licence": meta["licence"],
                "turns": turns,
            }
        )
    with open(out_file, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    return len(lines)
