"""Behaviour of a model that takes turns: run it micro-turn by micro-turn, score when it speaks (DESIGN.md §9).

    microturn eval behaviour --checkpoint runs/tiny/checkpoint.pt --data demo-out/dataset --split split.json [--json]

The model's *stream* (one bool per 200 ms micro-turn: does it speak) is the speech activity of its generated dMel
frames (evals/vocode.py, the pipeline's activity measure) over a conversation it hears micro-turn by micro-turn
(evals/respond.py, trainer/generate.py), with the checkpoint's own user_text setting (`none`: audio only). The
scores, their definitions and the baselines computed in the same run on the same conversations (always silent, the
pause rule swept over 200 .. 1,200 ms, and the data's own model side, the ceiling) are in evals/turn_taking.py.

`--json` prints one object:

    {"systems": {"model" | "always silent" | "pause rule <N> ms" | "data": {
        "speak_f1" | "yield_takeover_1s" | "yield_median_latency_s" | "pause_false_takeover" | "shift_hold_bacc" |
        "interruption_stop_1s" | "backchannel_continue" | ... : {"value", "ci95": [lo, hi], "n"}}},
     "pause_rule_curve": [{"pause_ms", "yield_median_latency_s", "pause_false_takeover"}, ...],
     "beyond_curve": bool, "curve_comparison": {...},
     "beyond_hull": bool, "hull_comparison": {...},  # mean latency against the rules' convex hull (see turn_taking)
     "conversations", "groups", "bootstrap", "min_pause_ms",
     "user_text", "data_backchannels_per_min", "timing_ms": {"median", "p95"}}

`value` is None where a row has no event to score (and a median latency is None with `"never": true` when more than
half the yields were never taken); a `ci95` end is None when it is infinite.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evals.turn_taking import (
    METRICS,
    SWEEP_MS,
    Reference,
    always_silent,
    backchannel_count,
    events,
    interruption_latencies,
    metric_rows,
    pause_rule,
    pause_takeovers,
    score_systems,
    speak_prf,
    user_pauses,
    yield_latencies,
)
from schemas.units import MICROTURN_S

logger = logging.getLogger(__name__)

__all__ = [
    "Reference",
    "always_silent",
    "backchannel_count",
    "evaluate_behaviour",
    "interruption_latencies",
    "pause_rule",
    "pause_takeovers",
    "reference_of",
    "score",
    "speak_prf",
    "table",
    "user_pauses",
    "yield_latencies",
]

MIN_PAUSE_MS = 400.0
"""Shortest user pause scored by default: 2 silent micro-turns (synthetic within-turn pauses run 0.4 .. 1.5 s)."""


def score(preds: Sequence[np.ndarray], refs: Sequence[Reference], *, min_pause_ms: float = 800.0) -> dict[str, Any]:
    """Every row for one system over conversations as plain values (no CI): the METRICS rows and the counts
    `yields`, `pauses`, `interruptions_eligible`, `backchannels_eligible`, `shift_hold_events`, `user_speech_min`."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} streams for {len(refs)} conversations")
    evs = [events(p, r, min_pause_ms=min_pause_ms) for p, r in zip(preds, refs, strict=True)]
    rows = metric_rows(evs, np.ones((1, len(evs))))
    out: dict[str, Any] = {}
    for key in METRICS:
        v = float(rows[key][0])
        out[key] = None if not np.isfinite(v) else v
    ft = out["pause_false_takeover"]
    out["pause_handling"] = None if ft is None else 1.0 - ft
    out["yields"] = sum(len(e.yield_latency) for e in evs)
    out["pauses"] = sum(len(e.pause_takeover) for e in evs)
    out["interruptions_eligible"] = sum(len(e.stop_latency) for e in evs)
    out["backchannels_eligible"] = sum(len(e.backchannel_continue) for e in evs)
    out["shift_hold_events"] = sum(len(e.shift_truth) for e in evs)
    out["user_speech_min"] = sum(e.user_microturns for e in evs) * MICROTURN_S / 60.0
    return out


def data_backchannel_rate(refs: Sequence[Reference]) -> float | None:
    """The dataset's own model backchannels (output_backchannel labels) per minute of user speech."""
    n = sum(len(r.onsets("output_backchannel")) for r in refs)
    minutes = sum(int(r.user.sum()) for r in refs) * MICROTURN_S / 60.0
    return n / minutes if minutes else None


ROWS = (
    ("speak_f1", "speak F1", "{:.3f}"),
    ("speak_precision", "speak precision", "{:.3f}"),
    ("speak_recall", "speak recall", "{:.3f}"),
    ("yield_takeover_1s", "yield: take-over share <= 1 s", "{:.3f}"),
    ("yield_median_latency_s", "yield: median latency (s; never=inf)", "{:.2f}"),
    ("yield_median_latency_started_s", "yield: median latency, taken only (s)", "{:.2f}"),
    ("yield_mean_latency_s", "yield: mean latency (s; never=5)", "{:.2f}"),
    ("pause_false_takeover", "pause: false take-over share", "{:.3f}"),
    ("shift_hold_bacc", "shift/hold balanced accuracy", "{:.3f}"),
    ("interruption_stop_1s", "interruption: stop share <= 1 s", "{:.3f}"),
    ("interruption_median_stop_s", "interruption: median stop (s)", "{:.2f}"),
    ("backchannel_continue", "backchannel: continue share", "{:.3f}"),
    ("backchannels_per_min", "own backchannels / min user speech", "{:.2f}"),
)
"""Table rows: key, label, format. Every cell: value [95 % CI] n."""


def _fmt(fmt: str, v: float | None, never: bool = False) -> str:
    if v is None:
        return "inf" if never else "-"
    return fmt.format(v)


def cell(entry: Mapping[str, Any], fmt: str) -> str:
    """`value [lo, hi] n` of one {"value", "ci95", "n"} entry."""
    lo, hi = entry["ci95"]
    never = bool(entry.get("never"))
    v = _fmt(fmt, entry["value"], never)
    if entry["value"] is None and not never:
        return f"- n={entry['n']}"
    lo_s = "-" if lo is None and hi is None else _fmt(fmt, lo, lo is None)
    hi_s = "-" if lo is None and hi is None else _fmt(fmt, hi, hi is None)
    return f"{v} [{lo_s},{hi_s}] n={entry['n']}"


def table(result: Mapping[str, Any], *, systems: Sequence[str] | None = None) -> str:
    """The behaviour table (one column per system; every cell value [95 % CI] n), the pause-rule sweep and the
    model's place against it."""
    sys_ = result["systems"]
    names = list(systems) if systems else [n for n in sys_ if not n.startswith("pause rule")]
    cols = [[cell(sys_[n][key], fmt) for n in names] for key, _, fmt in ROWS]
    width = max(14, *(len(n) for n in names), *(len(c) for row in cols for c in row))
    label_w = max(len(label) for _, label, _ in ROWS) + 2
    lines = [" " * label_w + "".join(f"{n:>{width + 2}s}" for n in names)]
    for (_, label, _), row in zip(ROWS, cols, strict=True):
        lines.append(f"{label:{label_w}s}" + "".join(f"{c:>{width + 2}s}" for c in row))
    lines.append(
        f"({result['conversations']} conversation perspectives of {result['groups']} conversations; 95 % bootstrap "
        f"CIs over conversations, {result['bootstrap']['resamples']} resamples; "
        f"pauses >= {result['min_pause_ms']:g} ms)"
    )
    lines.append("")
    lines.append("pause rule swept on the same conversations (speak after N ms of user silence):")
    lines.append(f"{'N ms':>8s}{'median yield latency s':>34s}{'pause false take-over':>34s}")
    for point in result["pause_rule_curve"]:
        s = sys_[f"pause rule {point['pause_ms']:g} ms"]
        lines.append(
            f"{point['pause_ms']:>8.0f}{cell(s['yield_median_latency_s'], '{:.2f}'):>34s}"
            f"{cell(s['pause_false_takeover'], '{:.3f}'):>34s}"
        )
    cmp = result.get("curve_comparison")
    if cmp:
        m = sys_["model"]
        lines.append(
            f"model: median yield latency {cell(m['yield_median_latency_s'], '{:.2f}')} s, pause false take-over "
            f"{cell(m['pause_false_takeover'], '{:.3f}')}"
        )
        lines.append(_reading("rule's latency at the model's false take-over", cmp, "latency", "{:.2f}", "s"))
        lines.append(_reading("rule's false take-over at the model's latency", cmp, "false_takeover", "{:.3f}", ""))
        share = cmp["beyond_share_of_resamples"]
        lines.append(
            f"beyond the pause rule's curve: {'YES' if cmp['beyond_curve'] else 'no'} (both margins' CIs above 0: "
            f"{'yes' if cmp['beyond_curve_ci'] else 'no'}; model and rule CIs overlap: "
            f"{'yes' if cmp['ci_overlap'] else 'no'}; beyond in "
            + ("-" if share is None else f"{100 * share:.0f} %")
            + " of resamples)"
        )
    dec = result.get("speak_decision")
    if dec:
        auc, p_yield, p_pause = (_fmt("{:.3f}", dec[k]) for k in ("auc", "mean_p_yield", "mean_p_pause"))
        lines.append(
            f"speak head where the user's silence starts: yields vs pauses AUC {auc} (mean p {p_yield} at "
            f"{dec['yields']} yields, {p_pause} at {dec['pauses']} pauses; 0.5 = no cue used)"
        )
    hull = result.get("hull_comparison")
    if hull:
        share = hull["beyond_share_of_resamples"]
        lat, ft = hull["latency_margin_s"], hull["false_takeover_margin"]
        lines.append(
            f"beyond the rules' convex hull in mean latency (what coin-flip policies cannot fake): "
            f"{'YES' if hull['beyond'] else 'no'}; margins (hull - model) latency "
            f"{_fmt('{:+.2f}', lat['value'], True)} s "
            f"[{_fmt('{:+.2f}', lat['ci95'][0], True)},{_fmt('{:+.2f}', lat['ci95'][1], True)}], false take-over "
            f"{_fmt('{:+.3f}', ft['value'], True)} [{_fmt('{:+.3f}', ft['ci95'][0], True)},"
            f"{_fmt('{:+.3f}', ft['ci95'][1], True)}]; both CIs above 0: {'yes' if hull['beyond_ci'] else 'no'}; "
            "beyond in " + ("-" if share is None else f"{100 * share:.0f} %") + " of resamples"
        )
    return "\n".join(lines)


def _reading(text: str, cmp: Mapping[str, Any], kind: str, fmt: str, unit: str) -> str:
    key = "rule_latency_at_model_false_takeover_s" if kind == "latency" else "rule_false_takeover_at_model_latency"
    r, margin = cmp[key], cmp[f"{kind}_margin" + ("_s" if kind == "latency" else "")]
    bound = {"exact": "", "lower": ">= ", "upper": "<= "}[r["bound"]]
    ci = r["ci95"]
    return (
        f"  {text}: {bound}{_fmt(fmt, r['value'], True)}{unit} [{_fmt(fmt, ci[0], True)},{_fmt(fmt, ci[1], True)}];"
        f" margin (rule - model) {_fmt(fmt, margin['value'], True)} "
        f"[{_fmt(fmt, margin['ci95'][0], True)},{_fmt(fmt, margin['ci95'][1], True)}]"
    )


def reference_of(conv: Any) -> Reference:
    """A conversation's Reference: its labels and the user side's word intervals (input and others streams)."""
    words = conv.sample.get("words.json") or []
    spans = tuple(
        (float(w["start_s"]), float(w.get("end_s", w["start_s"])))
        for w in words
        if w.get("stream") in ("input", "others")
    )
    return Reference(labels=np.asarray(conv.sample["labels.npy"], np.uint8), user_speech_s=spans or None)


def speak_decision(
    probs: Sequence[np.ndarray | None], refs: Sequence[Reference], preds: Sequence[np.ndarray]
) -> dict[str, Any] | None:
    """How well the speak head tells a yield from a within-turn pause where the user's silence starts (its first
    micro-turn, evals.cue_probe.silence_onsets, the model silent in the micro-turn before): the ROC AUC of its
    probability there (0.5: no better than the silence's length, which is the same at that moment), with the mean
    probability at yields and at pauses and their counts. Comparable with the data's cue probe
    (evals/cue_probe.py). None without a speak head."""
    from evals.cue_probe import roc_auc, silence_onsets

    if not probs or any(p is None or np.isnan(p).all() for p in probs):
        return None
    scores, labels = [], []
    for p, ref, pred in zip(probs, refs, preds, strict=True):
        for k, label in silence_onsets(ref):
            if k >= 1 and not pred[k - 1]:
                scores.append(float(p[k]))
                labels.append(label)
    s, y = np.asarray(scores), np.asarray(labels)
    return {
        "auc": roc_auc(s, y),
        "yields": int(y.sum()),
        "pauses": int(len(y) - y.sum()),
        "mean_p_yield": float(s[y == 1].mean()) if y.any() else None,
        "mean_p_pause": float(s[y == 0].mean()) if (y == 0).any() else None,
    }


_WORKER_MODEL: Any = None


Opts = tuple[float, int, int, float, float | None]
"""(temperature, top_k, seed, speak threshold, stop threshold) of `_run_one`."""


def _run_one(model: Any, conv: Any, i: int, opts: Opts) -> tuple[Any, Any, list[float]]:
    """Conversation i through the model: its speech stream (K,) bool, speak probabilities (K,), seconds per
    micro-turn."""
    from evals.vocode import frame_activity
    from trainer.generate import generate

    temperature, top_k, seed, threshold, stop = opts
    gen = generate(
        model, conv, temperature=temperature, top_k=top_k, seed=seed + i, speak_threshold=threshold, stop_threshold=stop
    )
    return frame_activity(gen.dmel) > 0, gen.speak_prob, gen.seconds


def _worker_init(model: Any) -> None:
    import torch

    global _WORKER_MODEL
    torch.set_num_threads(1)
    _WORKER_MODEL = model


def _worker_run(job: tuple[Any, int, Opts]) -> tuple[Any, Any, list[float]]:
    return _run_one(_WORKER_MODEL, *job)


def _run_all(model: Any, convs: Sequence[Any], opts: Opts, workers: int) -> list[tuple]:
    """`_run_one` over every conversation, in order; over `workers` spawned processes when more than one."""
    if workers <= 1 or len(convs) <= 1:
        return [_run_one(model, c, i, opts) for i, c in enumerate(convs)]
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # not fork: the parent's OpenMP pool does not survive a fork
    with ctx.Pool(min(workers, len(convs)), initializer=_worker_init, initargs=(model,)) as pool:
        return pool.map(_worker_run, [(c, i, opts) for i, c in enumerate(convs)], chunksize=1)


def evaluate_behaviour(
    model: Any,
    convs: Sequence[Any],
    *,
    pause_ms: float = 600.0,
    min_pause_ms: float = MIN_PAUSE_MS,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    resamples: int = 1000,
    bootstrap_seed: int = 0,
    speak_threshold: float = 0.5,
    stop_threshold: float | None = None,
    workers: int = 1,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run `model` over the conversations (trainer.generate, the checkpoint's user_text) and score it beside the
    baselines and the data (evals.turn_taking.score_systems); `pause_ms` picks the rule shown in the main table;
    `speak_threshold` is the speak head's decision threshold (checkpoints with a speak head), `stop_threshold` the
    one after a micro-turn the model spoke in (trainer.generate; None: the same); `workers` processes
    (one torch thread each) share the conversations, with the same streams as one (conversation i samples with
    seed + i wherever it runs). `labels` (one per conversation, e.g. the user's voice) also scores the model on each
    label's conversations alone, from the same streams: "by_label".

    Returns score_systems' object plus "speak_decision", "table_systems", "user_text", "data_backchannels_per_min",
    "timing_ms" (and "by_label": {label: {"conversations", "model", "beyond_curve", "beyond_hull"}})."""
    from trainer.generate import timing_summary

    refs = [reference_of(c) for c in convs]
    preds, seconds, probs = [], [], []
    for pred, prob, secs in _run_all(
        model, convs, (temperature, top_k, seed, speak_threshold, stop_threshold), workers
    ):
        preds.append(pred)
        probs.append(prob)
        seconds += secs
    groups = [c.conversation_id or c.name for c in convs]
    result = score_systems(
        {"model": preds, "data": [r.ref for r in refs]},
        refs,
        groups=groups,
        min_pause_ms=min_pause_ms,
        sweep_ms=SWEEP_MS,
        resamples=resamples,
        seed=bootstrap_seed,
    )
    if pause_ms not in SWEEP_MS:  # the table's rule, off the sweep's grid: scored on its own
        extra = score_systems(
            {},
            refs,
            groups=groups,
            min_pause_ms=min_pause_ms,
            sweep_ms=(pause_ms,),
            resamples=resamples,
            seed=bootstrap_seed,
            model=None,
        )
        result["systems"][f"pause rule {pause_ms:g} ms"] = extra["systems"][f"pause rule {pause_ms:g} ms"]
    med, p95 = timing_summary(seconds)
    result.update(
        speak_decision=speak_decision(probs, refs, preds),
        table_systems=["model", "always silent", f"pause rule {pause_ms:g} ms", "data"],
        user_text=model.cfg.data.user_text,
        data_backchannels_per_min=data_backchannel_rate(refs),
        timing_ms={"median": med, "p95": p95},
    )
    if labels is not None:
        result["by_label"] = scores_by_label(
            preds, refs, groups, labels, min_pause_ms=min_pause_ms, resamples=resamples, bootstrap_seed=bootstrap_seed
        )
    return result


def scores_by_label(
    preds: Sequence[np.ndarray],
    refs: Sequence[Reference],
    groups: Sequence[str],
    labels: Sequence[str],
    *,
    min_pause_ms: float = MIN_PAUSE_MS,
    resamples: int = 1000,
    bootstrap_seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """The model's rows (with CIs over that label's conversations) and its place against the pause rule's curve
    and hull computed on the same conversations, per label: {label: {"conversations", "model", "beyond_curve",
    "beyond_hull"}}."""
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels for {len(preds)} conversations")
    out = {}
    for label in sorted(set(labels)):
        idx = [i for i, x in enumerate(labels) if x == label]
        res = score_systems(
            {"model": [preds[i] for i in idx]},
            [refs[i] for i in idx],
            groups=[groups[i] for i in idx],
            min_pause_ms=min_pause_ms,
            sweep_ms=SWEEP_MS,
            resamples=resamples,
            seed=bootstrap_seed,
        )
        out[label] = {
            "conversations": len(idx),
            "model": res["systems"]["model"],
            "beyond_curve": res.get("beyond_curve"),
            "beyond_hull": res.get("beyond_hull"),
        }
    return out
