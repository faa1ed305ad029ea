"""Full-Duplex-Bench v1 metrics from a model's response WAVs, with an energy VAD instead of ASR word timings.

    microturn eval fdbench --clips fdbench --responses responses

Clips are what `microturn export fdbench` writes (CLIPS/v1/{task}/{clip}/ with input.wav and the task JSON); the
model's answer to a clip is RESPONSES/v1/{task}/{clip}/output.wav (what `microturn respond --input CLIPS` writes),
or output.wav inside the clip folder, Full-Duplex-Bench's own layout. Both are on the clip's timeline from 0 s.

Definitions, following Full-Duplex-Bench v1's evaluation scripts (evaluation/eval_pause_handling.py,
eval_smooth_turn_taking.py, eval_user_interruption.py; get_transcript/asr.py), where `chunks` are the time-aligned
words of the response:
- take turn (TOR, per clip): 0 when the response has no speech; else, with duration = end of the last chunk - start
  of the first, TOR = 1 when duration >= 1 s, and when duration < 1 s TOR = 1 only with more than 3 words.
- pause handling (`pause.json`): TOR over the whole response; the reported figure is the mean TOR over clips
  (the take-over rate; lower is better: the user only paused).
- smooth turn-taking (`turn_taking.json`): TOR over the whole response, and for TOR = 1 the latency = start of the
  first chunk - timestamp[0] (the end of the user's turn), negative values counted as 0; reported: mean TOR
  (higher is better) and mean latency over TOR = 1 clips.
- user interruption (`interrupt.json`): the response is cut at timestamp[1] (the end of the interrupting
  utterance) before transcription and times shifted back; TOR and latency (first chunk start - timestamp[1]) as
  above; reported: mean TOR and mean latency. Their GPT-4 relevance rating is not computed here.
Medians of the latencies are printed beside their means.

Where the energy VAD differs: their chunks are CrisperWhisper words (ASR over the response audio), here they are
speech segments of an energy VAD on 20 ms frames (RMS above `VAD_THRESHOLD_DBFS`, Silero VAD's defaults for the
rest: speech >= 250 ms, silences < 100 ms bridged, 30 ms padding). So (1) any loud sound counts as speech (ASR only
counts what it can transcribe: noise, breathing, or Griffin-Lim artefacts would not make words), (2) words are not
seen, so the "more than 3 words within 1 s" exception is not applied (short responses always count as no take-over),
and (3) onsets are energy onsets (ASR word starts can be later by the word's leading consonant). Full-Duplex-Bench
v1.5 names Silero VAD for its own timing; Silero needs a downloaded model, which the tests here cannot use.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.units import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

VAD_FRAME_S = 0.02
VAD_THRESHOLD_DBFS = -40.0
"""A 20 ms frame is speech when its RMS is above this (dB relative to full scale)."""
MIN_SPEECH_S, MIN_SILENCE_S, SPEECH_PAD_S = 0.25, 0.1, 0.03
"""Silero VAD's defaults (min_speech_duration_ms 250, min_silence_duration_ms 100, speech_pad_ms 30)."""
TURN_DURATION_S = 1.0
"""Their `turn_duration_threshold`."""

TASKS = {
    "pause_handling": "pause.json",
    "smooth_turn_taking": "turn_taking.json",
    "user_interruption": "interrupt.json",
}
"""v1 task folder -> the task file of a clip."""


def energy_vad(pcm: np.ndarray, sr: int = SAMPLE_RATE_HZ) -> list[tuple[float, float]]:
    """Speech segments [(start_s, end_s)] of mono PCM in [-1, 1] (see the module docstring)."""
    pcm = np.asarray(pcm, dtype=np.float64)
    if pcm.ndim > 1:
        pcm = pcm.mean(-1)
    hop = int(round(VAD_FRAME_S * sr))
    n = len(pcm) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(pcm[: n * hop].reshape(n, hop) ** 2, axis=1))
    voiced = 20 * np.log10(np.maximum(rms, 1e-10)) > VAD_THRESHOLD_DBFS
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    segs: list[list[float]] = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        a_s, b_s = a * VAD_FRAME_S, b * VAD_FRAME_S
        if segs and a_s - segs[-1][1] < MIN_SILENCE_S:
            segs[-1][1] = b_s
        else:
            segs.append([a_s, b_s])
    dur = len(pcm) / sr
    return [(max(0.0, a - SPEECH_PAD_S), min(dur, b + SPEECH_PAD_S)) for a, b in segs if b - a >= MIN_SPEECH_S]


def take_turn(segments: Sequence[tuple[float, float]]) -> int:
    """Their TOR from response chunks: 0 without speech or when it spans < 1 s (words unseen: see the docstring)."""
    if not segments:
        return 0
    return int(segments[-1][1] - segments[0][0] >= TURN_DURATION_S)


def score_clip(task: str, task_json: list[dict], pcm: np.ndarray, sr: int = SAMPLE_RATE_HZ) -> dict[str, Any]:
    """TOR and latency (None unless TOR = 1 and the task has one) of one response."""
    offset = 0.0
    if task == "user_interruption":
        offset = float(task_json[0]["timestamp"][1])
        pcm = np.asarray(pcm)[int(offset * sr) :]
    segments = [(a + offset, b + offset) for a, b in energy_vad(pcm, sr)]
    tor = take_turn(segments)
    latency = None
    if tor and task in ("smooth_turn_taking", "user_interruption"):
        ref = float(task_json[0]["timestamp"][0 if task == "smooth_turn_taking" else 1])
        latency = max(0.0, segments[0][0] - ref)
    return {"tor": tor, "latency_s": latency, "segments": segments}


def read_task(path: str, task: str) -> list[dict]:
    """A clip's task file (`TASKS`): a list whose first entry has ``timestamp`` [start_s, end_s], finite and
    ordered, for the tasks that score a latency from it.

    Raises:
        ValueError: naming the file and what is wrong (not JSON, not that shape, bad times).
    """
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: not a JSON task file: {e}") from None
    if not isinstance(obj, list):
        raise ValueError(f"{path}: expected a list of entries, got {type(obj).__name__}")
    if task in ("smooth_turn_taking", "user_interruption"):
        stamp = obj[0].get("timestamp") if obj and isinstance(obj[0], dict) else None
        ok = (
            isinstance(stamp, list)
            and len(stamp) == 2
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in stamp)
            and 0 <= stamp[0] <= stamp[1]
        )
        if not ok:
            raise ValueError(f"{path}: the first entry needs 'timestamp': [start_s, end_s], 0 <= start <= end")
    return obj


def find_response(clip_dir: str, clips_root: str, responses_root: str) -> str | None:
    rel = os.path.relpath(clip_dir, clips_root)
    for path in (os.path.join(responses_root, rel, "output.wav"), os.path.join(clip_dir, "output.wav")):
        if os.path.exists(path):
            return path
    return None


def evaluate_fdbench(clips: str, responses: str) -> dict[str, Any]:
    """Per v1 task: clips scored, missing responses, mean TOR, mean and median latency (seconds)."""
    import soundfile as sf

    base = os.path.join(clips, "v1") if os.path.isdir(os.path.join(clips, "v1")) else clips
    out: dict[str, Any] = {}
    for task, task_file in TASKS.items():
        folder = os.path.join(base, task)
        if not os.path.isdir(folder):
            continue
        tors, lats, missing = [], [], []
        for clip in sorted(os.listdir(folder)):
            clip_dir = os.path.join(folder, clip)
            if not os.path.exists(os.path.join(clip_dir, task_file)):
                continue
            path = find_response(clip_dir, clips, responses)
            if path is None:
                missing.append(clip)
                continue
            task_json = read_task(os.path.join(clip_dir, task_file), task)
            try:
                pcm, sr = sf.read(path, dtype="float32")
            except (RuntimeError, ValueError, TypeError) as e:  # soundfile's LibsndfileError is a RuntimeError
                raise ValueError(f"{path}: not a readable response WAV: {str(e).splitlines()[0][:200]}") from e
            if not len(pcm) or not np.isfinite(pcm).all():
                raise ValueError(f"{path}: the response WAV is empty or holds non-finite samples")
            r = score_clip(task, task_json, pcm, sr)
            tors.append(r["tor"])
            if r["latency_s"] is not None:
                lats.append(r["latency_s"])
        if missing:
            logger.warning("%s: %d clips without a response (e.g. %s)", task, len(missing), missing[0])
        out[task] = {
            "clips": len(tors),
            "missing": len(missing),
            "take_over_rate": float(np.mean(tors)) if tors else None,
            "mean_latency_s": float(np.mean(lats)) if lats else None,
            "median_latency_s": float(np.median(lats)) if lats else None,
        }
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"{'task':20s}{'clips':>7s}{'missing':>9s}{'TOR':>8s}{'mean lat (s)':>14s}{'median lat (s)':>16s}"]
    hint = {
        "pause_handling": "(lower is better)",
        "smooth_turn_taking": "(higher is better)",
        "user_interruption": "(higher is better)",
    }
    for task, r in result.items():

        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else fmt.format(v)

        lines.append(
            f"{task:20s}{r['clips']:>7d}{r['missing']:>9d}{f(r['take_over_rate'], '{:.3f}'):>8s}"
            f"{f(r['mean_latency_s'], '{:.2f}'):>14s}{f(r['median_latency_s'], '{:.2f}'):>16s}  "
            f"{hint[task]}"
        )
    return "\n".join(lines)
