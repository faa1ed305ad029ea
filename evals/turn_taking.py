"""Turn-taking scores of speak/silent streams against a dataset's labels: pure functions, no model (DESIGN.md §9).

    python -c "from evals.turn_taking import SWEEP_MS; print(SWEEP_MS)"

A *stream* is one bool per 200 ms micro-turn: does the system speak in it. A system decides micro-turn k having
heard the user through the end of micro-turn k (the §6 layout: the output of k attends to the input of k), and the
pause-rule baseline gets exactly that information. `evals/behaviour.py` runs a model and prints these scores.

Reference (per conversation, one perspective): `labels` (K,) uint8 LABEL_BITS from the sample's labels.npy; `user`
= input_speech, `ref` = output_speech (the data's own model side); optionally the user side's speech intervals in
seconds (the input and others words' [start, end), the intervals the pipeline's input_speech comes from), which time
the user's silence to the sample instead of to the micro-turn.

Baselines:
- *always silent*: never speaks.
- *pause rule N*: speaks in micro-turn k when, at the end of k, the user has been silent for at least N ms (since
  the end of the user's last speech; with intervals the silence is exact, else it is whole silent micro-turns x
  200 ms), once the user has spoken. It never speaks over the user (N >= 200 ms > any speech inside k). Swept over
  N = 200 .. 1,200 ms in 100 ms steps (`SWEEP_MS`): a larger N speaks in a subset of the micro-turns of a smaller
  one, so its latency never falls and its false take-over never rises as N grows.

Events and rows (per system; events pooled over conversations):
- speak F1 (precision, recall): "the system speaks" per micro-turn against the data's output_speech; n = micro-turns.
- yield take-over share within 1 s and median yield latency: for each `yield_to_output` onset e the user's silence
  starts at y (the micro-turn after the user's last speech before e; when the model's turn starts in overlap, the
  first micro-turn after e in which the user is silent); the system starts at the first s >= y where it speaks
  (already speaking at y: latency 0), looked for until the user speaks again (at most 5 s); latency (s - y) x 0.2 s.
  A yield the system never takes counts as infinitely late in the median (so the median is finite only when more
  than half the yields were taken: speaking at few yields cannot buy a low median);
  `yield_median_latency_started_s` is the median over the taken ones. n = yields.
- pause false take-over share: user pauses are silent runs [a, b) of the user between two user micro-turns, at
  least `min_pause_ms` long, during which (and one micro-turn either side) the data's model side is silent; the
  share of pauses where the system speaks in any micro-turn of [a, b). n = pauses.
- shift/hold balanced accuracy: every mutual silence [a, b) (neither side speaks) that follows the user speaking
  alone in a - 1 and lasts at least 2 micro-turns: 200 ms into it (micro-turn a + 1), does the system speak within
  the next 600 ms (micro-turns a + 1 .. a + 3): *shift*, or not: *hold*; the truth is what the data's model side did
  in the same micro-turns. Balanced accuracy = mean of the shift recall and the hold recall (0.5 = guessing; any
  constant answer scores 0.5). n = silences (shifts + holds).
- interruption stop share within 1 s (and median stop latency): each user `interruption` onset e while the system
  speaks (in e - 1 or e): the first silent micro-turn s >= e, latency (s - e) x 0.2 s. n = such interruptions.
- backchannel continue: each user `backchannel` onset e while the system speaks (in e - 1 or e): the system keeps
  talking when it speaks in every micro-turn of the user's backchannel (the user's speech run from e) and in the
  micro-turn after it. A system that stops whenever the user makes a sound scores 0 here and 1 on interruption stop;
  the two rows are read together. n = such backchannels.
- backchannels per minute of user speech (the system's own): speech runs of at most 1 s with the user speaking in
  the micro-turn before and after.

Confidence: a 95 % percentile bootstrap over conversations (`groups`: the perspectives of one conversation are
resampled together), `BOOTSTRAP_RESAMPLES` resamples with a fixed seed; every figure comes with its n.

Against the pause-rule curve (`compare_to_curve`): the curve is the sweep's points (median yield latency, pause false
take-over) plus the anchor N = 0 (speak in every micro-turn the user is silent in: latency 0). Two readings at the
model's point: the rule's latency at the model's false take-over share (the lowest latency the rule reaches with a
false take-over share no higher, linearly interpolated between neighbouring sweep points), and the rule's false
take-over share at the model's latency (likewise). Beyond the sweep the readings are bounds, said so (`bound`), and
only a bound that decides counts. `beyond_curve` is true when the model is strictly faster than the first reading
and strictly below the second. The same readings on every bootstrap resample (model and rule on the same resampled
conversations) give CIs of the two margins (rule minus model; > 0 favours the model); `beyond_curve_ci` is true
when both margins' CIs lie above 0, and `ci_overlap` says whether the model's own CIs (latency, false take-over)
overlap the CIs of the rule's readings.

The median can be gamed by chance: a cue-free policy that, at the start of every user silence, speaks at once with
probability p and otherwise stays silent has median latency 0 and false take-over about p, beyond the median curve
for any p > 1/2 (tests/evals/test_turn_taking.py plants one). Means mix linearly, so `compare_to_hull` (`beyond_hull`)
also reads the model's (mean yield latency, never counted as SEARCH_S; false take-over) against the lower convex
hull of the rules' points and always silent's: every point on that hull is reached by drawing one of two rules per
conversation, so only information the rules lack (a cue, or a leak) puts a model below it. The hull's rules run on
past the sweep to SEARCH_S (`HULL_EXTRA_MS`), so a model that waits longer than 1.2 s meets a plain longer
threshold, not a mixture of the 1.2 s rule and silence. A claim that a model beats the pause rule needs both
readings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from schemas.sample import LABEL_BITS
from schemas.units import MICROTURN_S

TAKE_OVER_S = 1.0
"""A start (or stop) within this many seconds counts."""
SEARCH_S = 5.0
"""How long after a yield the system's start is looked for (also bounded by the user speaking again)."""
BACKCHANNEL_MAX_S = 1.0
SWEEP_MS = tuple(range(200, 1201, 100))
"""The pause rule's thresholds (DESIGN.md §9)."""
HULL_EXTRA_MS = tuple(range(1300, int(SEARCH_S * 1000) + 1, 100))
"""Longer rules, for the hull only: a model slower than the sweep's 1.2 s would otherwise be compared with a mixture
of the 1.2 s rule and silence, which any plain longer threshold beats (a slow, cue-free model looked beyond it)."""
SHIFT_AT = 1
"""Shift/hold: decided this many micro-turns (200 ms) into a mutual silence ..."""
SHIFT_WINDOW = 3
"""... by whether the system speaks in the next this many micro-turns (600 ms)."""
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
_EPS = 1e-9

METRICS = (
    "speak_precision",
    "speak_recall",
    "speak_f1",
    "yield_takeover_1s",
    "yield_median_latency_s",
    "yield_median_latency_started_s",
    "yield_mean_latency_s",
    "pause_false_takeover",
    "shift_hold_bacc",
    "interruption_stop_1s",
    "interruption_median_stop_s",
    "backchannel_continue",
    "backchannels_per_min",
)
"""Every row, each reported as {"value", "ci95", "n"} (None where there is no event to score)."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """One conversation's labels: `labels` (K,) uint8 LABEL_BITS; user/ref speech derived from them.
    `user_speech_s`: optional [start, end) seconds of the user side's speech (its words), for exact silences."""

    labels: np.ndarray
    user_speech_s: tuple[tuple[float, float], ...] | None = None

    @property
    def user(self) -> np.ndarray:
        return (self.labels & LABEL_BITS["input_speech"]) > 0

    @property
    def ref(self) -> np.ndarray:
        return (self.labels & LABEL_BITS["output_speech"]) > 0

    def onsets(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.labels & LABEL_BITS[name])

    def user_silence_s(self) -> np.ndarray:
        """(K,) seconds the user has been silent at the end of each micro-turn; NaN before the user first spoke."""
        k_total = len(self.labels)
        out = np.full(k_total, np.nan)
        if self.user_speech_s:
            spans = sorted((float(a), float(b)) for a, b in self.user_speech_s if b > a)
            starts = np.array([a for a, _ in spans])
            ends = np.maximum.accumulate(np.array([b for _, b in spans]))
            t = (np.arange(k_total) + 1) * MICROTURN_S
            i = np.searchsorted(starts, t, side="left") - 1  # last span starting before t
            has = i >= 0
            last_end = ends[np.maximum(i, 0)]
            out[has] = np.maximum(t[has] - last_end[has], 0.0)
            return out
        run, heard = 0, False
        for k, u in enumerate(self.user):
            heard |= bool(u)
            run = 0 if u else run + 1
            if heard:
                out[k] = run * MICROTURN_S
        return out


def always_silent(ref: Reference) -> np.ndarray:
    return np.zeros(len(ref.labels), bool)


def pause_rule(ref: Reference, pause_ms: float = 600.0) -> np.ndarray:
    """Speak in micro-turn k when the user has been silent for >= pause_ms at the end of k (see the docstring)."""
    silence = ref.user_silence_s()
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(silence, nan=-1.0) >= pause_ms / 1000.0 - _EPS


def silence_rule(ref: Reference) -> np.ndarray:
    """The curve's anchor N = 0: speak in every micro-turn the user is silent in, once the user has spoken."""
    heard = np.cumsum(ref.user) > 0
    return heard & ~ref.user


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
        if user[y]:  # an overlapping yield: the user's silence starts after the onset
            while y < len(user) and user[y]:
                y += 1
        else:
            while y > 0 and not user[y - 1]:
                y -= 1
        found = None
        for s in range(y, min(len(pred), y + search + 1)):
            if s > y and user[s]:
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


def mutual_silences(ref: Reference) -> list[tuple[int, int]]:
    """Runs [a, b) where neither the user nor the data's model speaks, after the user spoke alone in a - 1, at least
    SHIFT_AT + 1 micro-turns long and with the whole decision window inside the conversation."""
    user, model = ref.user, ref.ref
    quiet = ~user & ~model
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    out = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        a, b = int(a), int(b)
        if a == 0 or not user[a - 1] or model[a - 1] or b - a < SHIFT_AT + 1:
            continue
        if a + SHIFT_AT + SHIFT_WINDOW > len(user):
            continue
        out.append((a, b))
    return out


def shift_hold(pred: np.ndarray, ref: Reference) -> tuple[list[bool], list[bool]]:
    """(truth, prediction) per mutual silence: True = shift (speaks within the window), False = hold."""
    truth, guess = [], []
    for a, _ in mutual_silences(ref):
        lo, hi = a + SHIFT_AT, a + SHIFT_AT + SHIFT_WINDOW
        truth.append(bool(ref.ref[lo:hi].any()))
        guess.append(bool(np.asarray(pred[lo:hi]).any()))
    return truth, guess


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


def backchannel_continues(pred: np.ndarray, ref: Reference) -> list[bool]:
    """Per user backchannel onset where the system is speaking (e - 1 or e): whether it speaks through the user's
    backchannel (its speech run from e) and in the micro-turn after it."""
    pred, user = np.asarray(pred, bool), ref.user
    out = []
    for e in ref.onsets("backchannel"):
        e = int(e)
        if not (pred[e] or (e > 0 and pred[e - 1])):
            continue
        b = e
        while b < len(user) and user[b]:
            b += 1
        out.append(bool(pred[e : min(b + 1, len(pred))].all()))
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


@dataclasses.dataclass(frozen=True)
class Events:
    """One system's scored events on one conversation (latencies in seconds, inf = never)."""

    tp: int
    fp: int
    fn: int
    microturns: int
    user_microturns: int
    yield_latency: np.ndarray
    pause_takeover: np.ndarray
    shift_truth: np.ndarray
    shift_pred: np.ndarray
    stop_latency: np.ndarray
    backchannel_continue: np.ndarray
    backchannels: int


def events(pred: np.ndarray, ref: Reference, *, min_pause_ms: float = 800.0) -> Events:
    pred = np.asarray(pred, bool)
    if len(pred) != len(ref.labels):
        raise ValueError(f"a stream of {len(pred)} micro-turns for a conversation of {len(ref.labels)}")
    c = speak_prf(pred, ref.ref)
    truth, guess = shift_hold(pred, ref)

    def lat(xs: list[float | None]) -> np.ndarray:
        return np.array([math.inf if x is None else x for x in xs], dtype=np.float64)

    return Events(
        tp=c["tp"],
        fp=c["fp"],
        fn=c["fn"],
        microturns=len(pred),
        user_microturns=int(ref.user.sum()),
        yield_latency=lat(yield_latencies(pred, ref)),
        pause_takeover=np.array(pause_takeovers(pred, user_pauses(ref, min_pause_ms)), bool),
        shift_truth=np.array(truth, bool),
        shift_pred=np.array(guess, bool),
        stop_latency=lat(interruption_latencies(pred, ref)),
        backchannel_continue=np.array(backchannel_continues(pred, ref), bool),
        backchannels=backchannel_count(pred, ref.user),
    )


def resample_weights(groups: Sequence[str], resamples: int, seed: int) -> np.ndarray:
    """(1 + resamples, C) multiplicity of each conversation: row 0 all ones (the point estimate), then one row per
    bootstrap resample of the groups (conversations) with replacement; a group's perspectives move together."""
    names = sorted(set(groups))
    index = np.array([names.index(g) for g in groups], dtype=np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(resamples, len(names)))
    counts = np.stack([np.bincount(row, minlength=len(names)) for row in draws]) if resamples else np.zeros((0, 0))
    w = np.ones((1 + resamples, len(groups)), dtype=np.float64)
    if resamples:
        w[1:] = counts[:, index]
    return w


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _share(flags: Sequence[np.ndarray], w: np.ndarray) -> np.ndarray:
    sums = np.array([float(np.sum(f)) for f in flags])
    counts = np.array([float(len(f)) for f in flags])
    return _ratio(w @ sums, w @ counts)


def _mean(values: Sequence[np.ndarray], w: np.ndarray) -> np.ndarray:
    sums = np.array([float(np.sum(v)) for v in values])
    counts = np.array([float(len(v)) for v in values])
    return _ratio(w @ sums, w @ counts)


def _median(values: Sequence[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Weighted median per row of w (np.median of the multiset; inf allowed; NaN when empty)."""
    conv = np.concatenate([np.full(len(v), i) for i, v in enumerate(values)]) if values else np.zeros(0, int)
    flat = np.concatenate(values) if values else np.zeros(0)
    out = np.full(w.shape[0], np.nan)
    if flat.size == 0:
        return out
    order = np.argsort(flat, kind="stable")
    flat, conv = flat[order], conv[order]
    cum = np.cumsum(w[:, conv], axis=1)
    n = cum[:, -1]
    ok = n > 0
    lo = np.argmax(cum > ((n - 1) // 2)[:, None], axis=1)
    hi = np.argmax(cum > (n // 2)[:, None], axis=1)
    with np.errstate(invalid="ignore"):
        out[ok] = ((flat[lo] + flat[hi]) / 2.0)[ok]
    return out


def metric_rows(evs: Sequence[Events], w: np.ndarray) -> dict[str, np.ndarray]:
    """Every METRICS row per row of w (row 0: the point estimate), and the event counts of the point estimate."""
    tp, fp, fn = (w @ np.array([getattr(e, f) for e in evs], float) for f in ("tp", "fp", "fn"))
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    p, r = np.nan_to_num(p), np.nan_to_num(r)
    f1 = _ratio(2 * p * r, p + r)
    shift = [e.shift_truth for e in evs]
    hit = w @ np.array([float((e.shift_truth & e.shift_pred).sum()) for e in evs])
    n_shift = w @ np.array([float(e.shift_truth.sum()) for e in evs])
    rej = w @ np.array([float((~e.shift_truth & ~e.shift_pred).sum()) for e in evs])
    n_hold = w @ np.array([float((~e.shift_truth).sum()) for e in evs])
    minutes = w @ np.array([e.user_microturns * MICROTURN_S / 60.0 for e in evs])
    started = [e.yield_latency[np.isfinite(e.yield_latency)] for e in evs]
    stopped = [e.stop_latency[np.isfinite(e.stop_latency)] for e in evs]
    return {
        "speak_precision": p,
        "speak_recall": r,
        "speak_f1": np.nan_to_num(f1),
        "yield_takeover_1s": _share([e.yield_latency <= TAKE_OVER_S + _EPS for e in evs], w),
        "yield_median_latency_s": _median([e.yield_latency for e in evs], w),
        "yield_median_latency_started_s": _median(started, w),
        "yield_mean_latency_s": _mean([np.minimum(e.yield_latency, SEARCH_S) for e in evs], w),
        "pause_false_takeover": _share([e.pause_takeover for e in evs], w),
        "shift_hold_bacc": (_ratio(hit, n_shift) + _ratio(rej, n_hold)) / 2.0,
        "interruption_stop_1s": _share([e.stop_latency <= TAKE_OVER_S + _EPS for e in evs], w),
        "interruption_median_stop_s": _median(stopped, w),
        "backchannel_continue": _share([e.backchannel_continue for e in evs], w),
        "backchannels_per_min": _ratio(w @ np.array([float(e.backchannels) for e in evs]), minutes),
        "_n": np.array(
            [
                sum(e.microturns for e in evs),  # speak_precision
                sum(e.microturns for e in evs),
                sum(e.microturns for e in evs),
                sum(len(e.yield_latency) for e in evs),
                sum(len(e.yield_latency) for e in evs),
                sum(len(s) for s in started),
                sum(len(e.yield_latency) for e in evs),
                sum(len(e.pause_takeover) for e in evs),
                sum(len(s) for s in shift),
                sum(len(e.stop_latency) for e in evs),
                sum(len(s) for s in stopped),
                sum(len(e.backchannel_continue) for e in evs),
                sum(e.user_microturns for e in evs),  # backchannels_per_min: user micro-turns
            ]
        ),
    }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _ci(boot: np.ndarray) -> list[float | None]:
    """The 95 % percentile interval of bootstrap values (outward: the order statistics at or beyond 2.5 / 97.5 %, so
    infinite medians need no arithmetic); None for an infinite end, [None, None] without values."""
    if not boot.size:
        return [None, None]
    return [_finite(np.percentile(boot, 2.5, method="lower")), _finite(np.percentile(boot, 97.5, method="higher"))]


def summarise(rows: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """{metric: {"value", "ci95": [lo, hi], "n"}}: value from row 0, CI the 2.5/97.5 percentiles of the resamples
    (those with events; an infinite median stays infinite and is written as None)."""
    out = {}
    for i, key in enumerate(METRICS):
        a = rows[key]
        boot = a[1:][~np.isnan(a[1:])]
        ci = _ci(boot)
        v = a[0]
        out[key] = {"value": None if np.isnan(v) else _finite(v), "ci95": ci, "n": int(rows["_n"][i])}
        if key.startswith("yield_median") and np.isinf(v):
            out[key]["never"] = True  # more than half the yields never taken: the median is infinite
    return out


def frontier(x: float, xs: np.ndarray, ys: np.ndarray) -> tuple[float, str]:
    """The lowest y a monotone family reaches with x' <= x: xs nondecreasing, ys nonincreasing (points in family
    order), linear between neighbours. Returns (value, bound): "exact"; "lower" when x < xs[0] (the family does not
    reach x: the true value is >= ys[0]); "upper" when x > xs[-1] (beyond the last point: <= ys[-1])."""
    if np.isnan(x):
        return math.nan, "exact"
    if x < xs[0] - _EPS:
        return float(ys[0]), "lower"
    i = int(np.flatnonzero(xs <= x + _EPS)[-1])
    if i == len(xs) - 1:
        return float(ys[-1]), "upper" if x > xs[-1] + _EPS else "exact"
    x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
    if not (math.isfinite(x1) and math.isfinite(y0)) or x1 - x0 < _EPS:  # an infinite y0 holds up to x1
        return float(y0), "exact"
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0)), "exact"


def readings(
    model_lat: float, model_ft: float, lat: np.ndarray, ft: np.ndarray
) -> tuple[tuple[float, str], tuple[float, str], bool]:
    """The rule's latency at the model's false take-over, its false take-over at the model's latency, and whether
    the model lies strictly beyond both. lat/ft: the rule's points in increasing N (lat nondecreasing, ft
    nonincreasing)."""
    r_lat = frontier(model_ft, ft[::-1], lat[::-1])  # ft ascending (large N first), lat descending
    r_ft = frontier(model_lat, lat, ft)
    # "exact" and "lower" bounds decide (the rule's true value is at least the reading); "upper" never does
    faster = math.isfinite(model_lat) and r_lat[1] != "upper" and model_lat < r_lat[0] - _EPS
    fewer = r_ft[1] != "upper" and model_ft < r_ft[0] - _EPS
    return r_lat, r_ft, bool(faster and fewer and not np.isnan(model_ft))


def _margin(rule: float, model: float) -> float:
    """rule - model, NaN where both are the same infinity (a model and a rule that never take the turn: no margin)."""
    if math.isinf(rule) and math.isinf(model) and (rule > 0) == (model > 0):
        return math.nan
    return float(rule - model)


def compare_to_curve(model: Mapping[str, np.ndarray], rules: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """The model's point against the pause rules' curve (rules in increasing N, the N = 0 anchor first), on the
    point estimate and on every bootstrap resample (rows of the metric arrays)."""
    lat = np.stack([r["yield_median_latency_s"] for r in rules], axis=1)  # (1 + B, points)
    ft = np.stack([r["pause_false_takeover"] for r in rules], axis=1)
    m_lat, m_ft = model["yield_median_latency_s"], model["pause_false_takeover"]
    rows = []
    for b in range(len(m_lat)):
        if np.isnan(ft[b]).any() or np.isnan(lat[b]).any() or np.isnan(m_ft[b]):
            rows.append((math.nan, math.nan, math.nan, math.nan, False))
            continue
        lat_b = np.maximum.accumulate(lat[b])  # monotone by construction; guards float ties
        ft_b = np.minimum.accumulate(ft[b])
        (r_lat, _), (r_ft, _), beyond = readings(float(m_lat[b]), float(m_ft[b]), lat_b, ft_b)
        rows.append((r_lat, r_ft, _margin(r_lat, m_lat[b]), _margin(r_ft, m_ft[b]), beyond))
    a = np.array([r[:4] for r in rows], dtype=np.float64)
    point_lat, point_ft, beyond = readings(
        float(m_lat[0]), float(m_ft[0]), np.maximum.accumulate(lat[0]), np.minimum.accumulate(ft[0])
    )

    def ci(col: np.ndarray) -> list[float | None]:
        return _ci(col[1:][~np.isnan(col[1:])])

    m_lat_ci, m_ft_ci = ci(np.asarray(m_lat, np.float64)), ci(np.asarray(m_ft, np.float64))
    r_lat_ci, r_ft_ci = ci(a[:, 0]), ci(a[:, 1])
    lat_margin_ci, ft_margin_ci = ci(a[:, 2]), ci(a[:, 3])

    def overlap(x: list[float | None], y: list[float | None]) -> bool | None:
        if None in x or None in y:
            # an infinite bound (None) reaches everything on its side: overlap unless the finite ends separate
            lo_x, hi_x = x[0] if x[0] is not None else -math.inf, x[1] if x[1] is not None else math.inf
            lo_y, hi_y = y[0] if y[0] is not None else -math.inf, y[1] if y[1] is not None else math.inf
            return not (hi_x < lo_y or hi_y < lo_x)
        return not (x[1] < y[0] or y[1] < x[0])

    boot_beyond = [r[4] for r in rows[1:]]
    margins_above = all(c is not None and c > 0 for c in (lat_margin_ci[0], ft_margin_ci[0]))
    return {
        "rule_latency_at_model_false_takeover_s": {
            "value": _finite(point_lat[0]),
            "bound": point_lat[1],
            "ci95": r_lat_ci,
        },
        "rule_false_takeover_at_model_latency": {"value": _finite(point_ft[0]), "bound": point_ft[1], "ci95": r_ft_ci},
        "latency_margin_s": {"value": _finite(a[0, 2]), "ci95": lat_margin_ci},
        "false_takeover_margin": {"value": _finite(a[0, 3]), "ci95": ft_margin_ci},
        "beyond_curve": beyond,
        "beyond_curve_ci": bool(beyond and margins_above),
        "beyond_share_of_resamples": float(np.mean(boot_beyond)) if boot_beyond else None,
        "ci_overlap": bool(overlap(m_lat_ci, r_lat_ci) or overlap(m_ft_ci, r_ft_ci)),
    }


def lower_hull(lat: np.ndarray, ft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower convex hull of points (lat, ft), by increasing lat, only its decreasing part: every point on it is
    reached by mixing two rules event by event (choose one at random per conversation), so no policy, random or not,
    that only times silences can lie below it in expectation."""
    order = np.lexsort((ft, lat))
    hull: list[tuple[float, float]] = []
    for x, y in zip(lat[order], ft[order], strict=True):
        if hull and y >= hull[-1][1]:  # not lower than a faster point: dominated
            continue
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0:  # hull[-1] on or above the chord: drop it
                hull.pop()
            else:
                break
        hull.append((float(x), float(y)))
    a = np.array(hull)
    return a[:, 0], a[:, 1]


def compare_to_hull(
    model: Mapping[str, np.ndarray], rules: Sequence[Mapping[str, np.ndarray]], silent: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """The model's (mean yield latency, pause false take-over) against the lower convex hull of the rules' points
    and always silent's (SEARCH_S, 0): the comparison a random mixture of rules cannot win (means mix linearly, a
    median does not: a policy that answers at once or never, by a coin flip, has a low median at any false take-over
    share). Readings as in `compare_to_curve`, on the point estimate and every resample."""
    key = "yield_mean_latency_s"
    systems = [*rules, silent]
    lat = np.stack([r[key] for r in systems], axis=1)
    ft = np.stack([r["pause_false_takeover"] for r in systems], axis=1)
    m_lat, m_ft = model[key], model["pause_false_takeover"]
    rows = []
    for b in range(len(m_lat)):
        if np.isnan(ft[b]).any() or np.isnan(lat[b]).any() or np.isnan(m_ft[b]) or np.isnan(m_lat[b]):
            rows.append((math.nan, math.nan, False))
            continue
        hx, hy = lower_hull(lat[b], ft[b])
        (r_lat, _), (r_ft, _), beyond = readings(float(m_lat[b]), float(m_ft[b]), hx, hy)
        rows.append((r_lat - m_lat[b], r_ft - m_ft[b], beyond))
    a = np.array([r[:2] for r in rows], dtype=np.float64)
    hx, hy = lower_hull(lat[0], ft[0])
    p_lat, p_ft, beyond = readings(float(m_lat[0]), float(m_ft[0]), hx, hy)
    lat_ci, ft_ci = _ci(a[1:, 0][~np.isnan(a[1:, 0])]), _ci(a[1:, 1][~np.isnan(a[1:, 1])])
    above = all(c is not None and c > 0 for c in (lat_ci[0], ft_ci[0]))
    boot = [r[2] for r in rows[1:]]
    return {
        "hull": [
            {"yield_mean_latency_s": float(x), "pause_false_takeover": float(y)} for x, y in zip(hx, hy, strict=True)
        ],
        "hull_latency_at_model_false_takeover_s": {"value": _finite(p_lat[0]), "bound": p_lat[1]},
        "hull_false_takeover_at_model_latency": {"value": _finite(p_ft[0]), "bound": p_ft[1]},
        "latency_margin_s": {"value": _finite(a[0, 0]), "ci95": lat_ci},
        "false_takeover_margin": {"value": _finite(a[0, 1]), "ci95": ft_ci},
        "beyond": beyond,
        "beyond_ci": bool(beyond and above),
        "beyond_share_of_resamples": float(np.mean(boot)) if boot else None,
    }


def score_systems(
    streams: Mapping[str, Sequence[np.ndarray]],
    refs: Sequence[Reference],
    *,
    groups: Sequence[str] | None = None,
    min_pause_ms: float = 800.0,
    sweep_ms: Sequence[float] = SWEEP_MS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    model: str | None = "model",
) -> dict[str, Any]:
    """Score every system of `streams` (name -> one stream per conversation) beside always-silent and the swept
    pause rule, computed here on the same conversations, with bootstrap CIs over `groups` (conversation ids; default:
    each conversation its own). Returns {"systems": {name: {metric: {value, ci95, n}}}, "pause_rule_curve",
    "beyond_curve", "curve_comparison", "conversations", "groups", "bootstrap"}; `model` names the system compared
    with the curve (None: no comparison)."""
    groups = list(groups) if groups is not None else [str(i) for i in range(len(refs))]
    if len(groups) != len(refs):
        raise ValueError(f"{len(groups)} group names for {len(refs)} conversations")
    w = resample_weights(groups, resamples, seed)
    rows: dict[str, dict[str, np.ndarray]] = {}

    def add(name: str, preds: Sequence[np.ndarray]) -> None:
        if len(preds) != len(refs):
            raise ValueError(f"{name}: {len(preds)} streams for {len(refs)} conversations")
        rows[name] = metric_rows([events(p, r, min_pause_ms=min_pause_ms) for p, r in zip(preds, refs, strict=True)], w)

    for name, preds in streams.items():
        add(name, preds)
    add("always silent", [always_silent(r) for r in refs])
    add("pause rule 0 ms (anchor)", [silence_rule(r) for r in refs])
    for n in sweep_ms:
        add(f"pause rule {n:g} ms", [pause_rule(r, n) for r in refs])
    longer = [n for n in HULL_EXTRA_MS if n > max(sweep_ms, default=0)] if model in rows else []
    for n in longer:  # for the hull only, not shown
        add(f"pause rule {n:g} ms (hull)", [pause_rule(r, n) for r in refs])
    curve = []
    for n in sweep_ms:
        s = rows[f"pause rule {n:g} ms"]
        lat0 = s["yield_median_latency_s"][0]
        curve.append(
            {
                "pause_ms": float(n),
                "yield_median_latency_s": None if np.isnan(lat0) else _finite(lat0),
                "pause_false_takeover": None
                if np.isnan(s["pause_false_takeover"][0])
                else float(s["pause_false_takeover"][0]),
            }
        )
    out: dict[str, Any] = {
        "systems": {name: summarise(r) for name, r in rows.items() if not name.endswith(")")},
        "pause_rule_curve": curve,
        "conversations": len(refs),
        "groups": len(set(groups)),
        "bootstrap": {"resamples": resamples, "seed": seed, "unit": "conversation", "ci": 0.95},
        "min_pause_ms": min_pause_ms,
    }
    if model is not None and model in rows:
        rules = [rows["pause rule 0 ms (anchor)"]] + [rows[f"pause rule {n:g} ms"] for n in sweep_ms]
        cmp = compare_to_curve(rows[model], rules)
        out["curve_comparison"] = cmp
        out["beyond_curve"] = cmp["beyond_curve"]
        hull_rules = rules + [rows[f"pause rule {n:g} ms (hull)"] for n in longer]
        hull = compare_to_hull(rows[model], hull_rules, rows["always silent"])
        out["hull_comparison"] = hull
        out["beyond_hull"] = hull["beyond"]
    return out
