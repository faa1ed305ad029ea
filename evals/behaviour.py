"""Behaviour of a model that takes turns, scored on per-micro-turn speak/silent streams against the dataset's labels.

    microturn eval behaviour --checkpoint runs/tiny/checkpoint.pt --data demo-out/dataset --split split.json

A *stream* is one bool per 200 ms micro-turn: does the system speak then. The model's stream is the speech activity
of its generated dMel frames (evals/vocode.py, the pipeline's activity measure) over a conversation it hears
micro-turn by micro-turn (evals/respond.py). Two baselines run on the same conversations: *always silent*, and a
*pause rule* that speaks in micro-turn k when the user has been silent for the last N ms (micro-turns k - n .. k,
n = N / 200 ms, so it starts exactly N ms after the user stops) and stops in the first micro-turn the user speaks in.
The *data* column scores the dataset's own model side with the same functions (the ceiling).

Reference from each sample's labels.npy (schemas/sample.py LABEL_BITS): `user` = input_speech, `ref` = output_speech,
events = the onset bits. Times are on the 200 ms grid. Rows (per system; counts pooled over conversations):
- speak precision / recall / F1: "the system speaks" per micro-turn against the data's output_speech.
- yield take-over share (within 1 s) and median latency: for each `yield_to_output` onset e, the user's silence
  starts at y (the micro-turn after the user's last speech before e; y = e when the user spoke in e - 1); the
  system starts at the first s >= y where it speaks, looked for until the user speaks again (at most 5 s); latency
  (s - y) * 0.2 s; taken over when latency <= 1 s. Median over the events where it started at all.
- pause false take-over share: user pauses are silent runs [a, b) of the user between two user micro-turns, at
  least `min_pause_ms` long, during which (and one micro-turn either side) the data's model side is silent: the
  user keeps the floor. The share of pauses where the system speaks in any micro-turn of [a, b). `pause handling`
  is 1 minus it (1 = never takes the floor in a pause; an always-talking stream scores 0).
- interruption stop share (within 1 s) and median stop latency: for each user `interruption` onset e at which the
  system is speaking (in e - 1 or e; `eligible` counts them), the first silent micro-turn s >= e; latency
  (s - e) * 0.2 s; stopped when <= 1 s. Median over events where it stopped at all.
- backchannels per minute of user speech: system speech runs of at most 1 s with the user speaking in the
  micro-turn just before and just after the run (the pipeline's backchannel: the other speaker talks through it);
  user speech minutes = user micro-turns * 0.2 / 60. The data's own rate from its `output_backchannel` labels is
  the row `backchannels/min (labels)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from schemas.sample import LABEL_BITS
from schemas.units import MICROTURN_S

logger = logging.getLogger(__name__)

TAKE_OVER_S = 1.0
"""A start (or stop) within this many seconds counts."""
SEARCH_S = 5.0
"""How long after a yield the system's start is looked for (also bounded by the user speaking again)."""
BACKCHANNEL_MAX_S = 1.0


@dataclasses.dataclass(frozen=True)
class Reference:
    """One conversation's labels: `labels` (K,) uint8 LABEL_BITS; user/ref speech derived from them."""

    labels: np.ndarray

    @property
    def user(self) -> np.ndarray:
        return (self.labels & LABEL_BITS["input_speech"]) > 0

    @property
    def ref(self) -> np.ndarray:
        return (self.labels & LABEL_BITS["output_speech"]) > 0

    def onsets(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.labels & LABEL_BITS[name])


def always_silent(ref: Reference) -> np.ndarray:
    return np.zeros(len(ref.labels), bool)


def pause_rule(ref: Reference, pause_ms: float = 600.0) -> np.ndarray:
    """Speak in micro-turn k when the user is silent in k - n .. k (n = pause_ms / 200, rounded), after the user has
    spoken at least once."""
    n = max(int(round(pause_ms / 1000.0 / MICROTURN_S)), 0)
    user = ref.user
    out = np.zeros(len(user), bool)
    silent_run, heard = 0, False
    for k, u in enumerate(user):
        heard |= bool(u)
        silent_run = 0 if u else silent_run + 1
        out[k] = heard and silent_run >= n + 1
    return out


def speak_prf(pred: np.ndarray, ref: np.ndarray) -> dict[str, int]:
    """Counts for precision/recall of "speaks": tp, fp, fn."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    return {"tp": int((pred & ref).sum()), "fp": int((pred & ~ref).sum()), "fn": int((~pred & ref).sum())}


def yield_latencies(pred: np.ndarray, ref: Reference) -> list[float | None]:
    """Per yield_to_output onset, the system's start latency in seconds after the user's silence began, or None."""
    user, out = ref.user, []
    search = int(round(SEARCH_S / MICROTURN_S))
    for e in ref.onsets("yield_to_output"):
        y = int(e)
        while y > 0 and not user[y - 1]:
            y -= 1
        y = min(max(y, 0), int(e))
        found = None
        for s in range(y, min(len(pred), y + search + 1)):
            if s > e and user[s]:
                break
            if pred[s]:
                found = (s - y) * MICROTURN_S
                break
        out.append(found)
    return out


def user_pauses(ref: Reference, min_pause_ms: float = 800.0) -> list[tuple[int, int]]:
    """Silent runs [a, b) of the user inside the user's turn (see the module docstring)."""
    user, model = ref.user, ref.ref
    min_len = max(int(math.ceil(min_pause_ms / 1000.0 / MICROTURN_S - 1e-9)), 1)
    edges = np.flatnonzero(np.diff(np.concatenate([[1], user.astype(np.int8), [1]])))
    out = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):  # silent runs [a, b)
        a, b = int(a), int(b)
        if a == 0 or b >= len(user) or b - a < min_len:
            continue
        if not model[a - 1 : b + 1].any():
            out.append((a, b))
    return out


def pause_takeovers(pred: np.ndarray, pauses: Sequence[tuple[int, int]]) -> list[bool]:
    """Per pause, whether the system speaks in it."""
    return [bool(np.asarray(pred[a:b]).any()) for a, b in pauses]


def interruption_latencies(pred: np.ndarray, ref: Reference) -> list[float | None]:
    """Per user interruption onset where the system is speaking (e - 1 or e): its stop latency in seconds, or None
    when it never stops; events where the system is silent are left out."""
    out = []
    for e in ref.onsets("interruption"):
        e = int(e)
        if not (pred[e] or (e > 0 and pred[e - 1])):
            continue
        quiet = np.flatnonzero(~np.asarray(pred[e:], bool))
        out.append(float(quiet[0]) * MICROTURN_S if quiet.size else None)
    return out


def backchannel_count(pred: np.ndarray, user: np.ndarray) -> int:
    """System speech runs of at most 1 s with the user speaking just before and just after."""
    pred = np.asarray(pred, bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], pred.astype(np.int8), [0]])))
    max_len = int(round(BACKCHANNEL_MAX_S / MICROTURN_S))
    n = 0
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a <= max_len and a > 0 and b < len(pred) and user[a - 1] and user[b]:
            n += 1
    return n


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


def _share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def score(preds: Sequence[np.ndarray], refs: Sequence[Reference], *, min_pause_ms: float = 800.0) -> dict[str, Any]:
    """Every row for one system over conversations (pred i scored against ref i); counts and latencies pooled."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} streams for {len(refs)} conversations")
    tp = fp = fn = 0
    yields: list[float | None] = []
    takeovers: list[bool] = []
    stops: list[float | None] = []
    bc = user_mt = 0
    for pred, ref in zip(preds, refs, strict=True):
        pred = np.asarray(pred, bool)
        if len(pred) != len(ref.labels):
            raise ValueError(f"a stream of {len(pred)} micro-turns for a conversation of {len(ref.labels)}")
        c = speak_prf(pred, ref.ref)
        tp, fp, fn = tp + c["tp"], fp + c["fp"], fn + c["fn"]
        yields += yield_latencies(pred, ref)
        takeovers += pause_takeovers(pred, user_pauses(ref, min_pause_ms))
        stops += interruption_latencies(pred, ref)
        bc += backchannel_count(pred, ref.user)
        user_mt += int(ref.user.sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    started = [x for x in yields if x is not None]
    stopped = [x for x in stops if x is not None]
    minutes = user_mt * MICROTURN_S / 60.0
    false_takeover = _share(takeovers)
    return {
        "speak_precision": p,
        "speak_recall": r,
        "speak_f1": 2 * p * r / (p + r) if p + r else 0.0,
        "yield_takeover_1s": _share([x is not None and x <= TAKE_OVER_S + 1e-9 for x in yields]),
        "yield_median_latency_s": _median(started),
        "yields": len(yields),
        "pause_false_takeover": false_takeover,
        "pause_handling": None if false_takeover is None else 1.0 - false_takeover,
        "pauses": len(takeovers),
        "interruption_stop_1s": _share([x is not None and x <= TAKE_OVER_S + 1e-9 for x in stops]),
        "interruption_median_stop_s": _median(stopped),
        "interruptions_eligible": len(stops),
        "backchannels_per_min": bc / minutes if minutes else None,
        "user_speech_min": minutes,
    }


def data_backchannel_rate(refs: Sequence[Reference]) -> float | None:
    """The dataset's own model backchannels (output_backchannel labels) per minute of user speech."""
    n = sum(len(r.onsets("output_backchannel")) for r in refs)
    minutes = sum(int(r.user.sum()) for r in refs) * MICROTURN_S / 60.0
    return n / minutes if minutes else None


ROWS = (
    ("speak_precision", "speak precision", "{:.3f}"),
    ("speak_recall", "speak recall", "{:.3f}"),
    ("speak_f1", "speak F1", "{:.3f}"),
    ("yield_takeover_1s", "yield: take-over share <= 1 s", "{:.3f}"),
    ("yield_median_latency_s", "yield: median start latency (s)", "{:.2f}"),
    ("pause_false_takeover", "pause: false take-over share", "{:.3f}"),
    ("pause_handling", "pause handling (1 - false take-over)", "{:.3f}"),
    ("interruption_stop_1s", "interruption: stop share <= 1 s", "{:.3f}"),
    ("interruption_median_stop_s", "interruption: median stop (s)", "{:.2f}"),
    ("interruptions_eligible", "interruption: events while speaking", "{:d}"),
    ("backchannels_per_min", "backchannels / min user speech", "{:.2f}"),
)


def table(results: Mapping[str, Mapping[str, Any]], *, data_rate: float | None = None) -> str:
    """A text table: one column per system, one line per row of ROWS."""
    names = list(results)
    width = max(12, *(len(n) for n in names))
    lines = [f"{'':38s}" + "".join(f"{n:>{width + 2}s}" for n in names)]
    for key, label, fmt in ROWS:
        cells = []
        for n in names:
            v = results[n].get(key)
            cells.append("-" if v is None else fmt.format(v))
        lines.append(f"{label:38s}" + "".join(f"{c:>{width + 2}s}" for c in cells))
    if data_rate is not None:  # under the last column (the data's)
        cells = ["" for _ in names[:-1]] + [f"{data_rate:.2f}"]
        lines.append(f"{'backchannels / min (data labels)':38s}" + "".join(f"{c:>{width + 2}s}" for c in cells))
    first = next(iter(results.values()), {})
    lines.append(
        f"({first.get('yields', 0)} yields, {first.get('pauses', 0)} user pauses, "
        f"{first.get('user_speech_min', 0.0):.2f} min of user speech)"
    )
    return "\n".join(lines)


def evaluate_behaviour(
    model: Any,
    convs: Sequence[Any],
    *,
    pause_ms: float = 600.0,
    min_pause_ms: float = 800.0,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Run `model` over the conversations (evals.respond) and score it beside the baselines and the data.

    Returns {"systems": {name: rows}, "data_backchannels_per_min", "timing_ms": {median, p95}, "conversations"}."""
    from evals.vocode import frame_activity
    from trainer.generate import generate, timing_summary

    refs = [Reference(labels=np.asarray(c.sample["labels.npy"], np.uint8)) for c in convs]
    preds, seconds = [], []
    for i, conv in enumerate(convs):
        gen = generate(model, conv, temperature=temperature, top_k=top_k, seed=seed + i)
        preds.append(frame_activity(gen.dmel) > 0)
        seconds += gen.seconds
    systems = {
        "model": score(preds, refs, min_pause_ms=min_pause_ms),
        "always silent": score([always_silent(r) for r in refs], refs, min_pause_ms=min_pause_ms),
        f"pause rule {pause_ms:g} ms": score([pause_rule(r, pause_ms) for r in refs], refs, min_pause_ms=min_pause_ms),
        "data": score([r.ref for r in refs], refs, min_pause_ms=min_pause_ms),
    }
    med, p95 = timing_summary(seconds)
    return {
        "systems": systems,
        "data_backchannels_per_min": data_backchannel_rate(refs),
        "timing_ms": {"median": med, "p95": p95},
        "conversations": len(convs),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="microturn eval behaviour",
        description="Run a checkpoint in real time over "
        "held-out conversations and score when it speaks, beside always-silent and "
        "pause-rule baselines (rows: see evals/behaviour.py).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `microturn train`")
    p.add_argument("--data", required=True, help="dataset directory (manifest.json + shards)")
    p.add_argument("--split", default=None, help="split.json from `microturn split`: only its eval conversations")
    p.add_argument(
        "--pause_ms", type=float, default=600.0, help="pause rule: speak after this much user silence (default 600)"
    )
    p.add_argument(
        "--min_pause_ms",
        type=float,
        default=800.0,
        help="shortest user pause scored (default 800, as `export fdbench`)",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("--top_k", type=int, default=0, help="top-k sampling; 0 = all classes")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max_conversations", type=int, default=0, help="at most this many (default 0 = all)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def eval_behaviour_main(argv: Sequence[str]) -> int:
    """`microturn eval behaviour`: print the behaviour table of a checkpoint and the baselines; returns 0."""
    import torch

    from evals.respond import load_inputs
    from trainer.checkpoint import load_model

    args = build_parser().parse_args(list(argv))
    torch.set_num_threads(args.threads)
    keep = None
    if args.split:
        from pipeline.tools.split import load_split

        keep = set(load_split(args.split)["eval"]["conversations"])
    convs = load_inputs(args.data, limit=args.max_conversations, keep=keep)
    if not convs:
        print(f"microturn eval behaviour: no conversations in {args.data}" + (f" for {args.split}" if keep else ""))
        return 2
    if any("labels.npy" not in c.sample for c in convs):
        print("microturn eval behaviour: --data must be a dataset (labels.npy per sample)")
        return 2
    model = load_model(args.checkpoint, args.device)
    result = evaluate_behaviour(
        model,
        convs,
        pause_ms=args.pause_ms,
        min_pause_ms=args.min_pause_ms,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['conversations']} conversations of {args.data}")
    print(table(result["systems"], data_rate=result["data_backchannels_per_min"]))
    t = result["timing_ms"]
    print(f"model wall time per micro-turn: median {t['median']:.1f} ms, p95 {t['p95']:.1f} ms")
    return 0
