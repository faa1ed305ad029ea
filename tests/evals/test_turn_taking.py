"""The evaluation that one threshold cannot win (evals/turn_taking.py), on planted streams.

PYTHONPATH=. python -m pytest -q tests/evals/test_turn_taking.py
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from evals.behaviour import table
from evals.turn_taking import (
    SWEEP_MS,
    Reference,
    compare_to_curve,
    frontier,
    mutual_silences,
    pause_rule,
    score_systems,
    user_pauses,
)
from schemas.sample import LABEL_BITS

DOCUMENTED = (
    "speak_f1",
    "yield_takeover_1s",
    "yield_median_latency_s",
    "pause_false_takeover",
    "shift_hold_bacc",
    "interruption_stop_1s",
    "backchannel_continue",
)


def planted_conversation(seed: int, turns: int = 6) -> tuple[Reference, list[tuple[int, int]]]:
    """A conversation on the grid: user turns with within-turn pauses of 2..7 micro-turns (0.4..1.4 s), yields to
    the model after gaps of 1..3 micro-turns, model turns with user backchannels (the model talks on) and user
    interruptions (the model stops 1..2 micro-turns later), the model yielding back after 1..3 micro-turns.
    Returns the reference and each yield's (y, e): the user's silence start and the model's start."""
    rng = np.random.default_rng(seed)
    user, model, marks = [], [], []

    def put(u: bool, m: bool, n: int, label: str | None = None) -> None:
        for i in range(n):
            user.append(u)
            model.append(m)
            marks.append(label if i == 0 else None)

    yields = []
    put(False, False, 2)
    interrupted = False
    for _ in range(turns):
        if not interrupted:
            put(True, False, int(rng.integers(3, 8)))
        for _ in range(int(rng.integers(0, 3))):  # within-turn pauses
            put(False, False, int(rng.integers(2, 8)))
            put(True, False, int(rng.integers(3, 8)))
        y = len(user)
        put(False, False, int(rng.integers(1, 4)))  # the user yields
        yields.append((y, len(user)))
        put(False, True, int(rng.integers(4, 8)), "yield_to_output")
        if rng.random() < 0.5:  # a user backchannel: the model talks on
            put(True, True, int(rng.integers(1, 3)), "backchannel")
            put(False, True, int(rng.integers(3, 6)))
        interrupted = rng.random() < 0.3
        if interrupted:  # the user takes the floor; the model stops 1..2 micro-turns later
            put(True, True, int(rng.integers(1, 3)), "interruption")
            put(True, False, int(rng.integers(3, 6)))
        else:
            put(False, False, int(rng.integers(1, 4)))
            marks_at = len(user)
            put(True, False, 1, "yield_to_input")
            del marks_at
    put(False, False, 3)
    labels = np.zeros(len(user), np.uint8)
    labels[np.array(user)] |= LABEL_BITS["input_speech"]
    labels[np.array(model)] |= LABEL_BITS["output_speech"]
    for k, name in enumerate(marks):
        if name:
            labels[k] |= LABEL_BITS[name]
    return Reference(labels=labels), yields


def answers_every_yield(ref: Reference, yields: list[tuple[int, int]], delay: int = 1) -> np.ndarray:
    """Starts `delay` micro-turns (200 ms each) after the user's silence begins at every yield and talks for the
    data's model turn; silent in every pause; stops at interruptions as the data does."""
    pred = np.zeros(len(ref.labels), bool)
    for y, e in yields:
        end = e
        while end < len(pred) and ref.ref[end]:
            end += 1
        pred[y + delay : end] = True
    return pred


def planted(n: int, seed: int = 0) -> tuple[list[Reference], list[list[tuple[int, int]]]]:
    pairs = [planted_conversation(seed * 1000 + i) for i in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_answering_every_yield_after_200_ms_lies_beyond_the_curve() -> None:
    refs, yields = planted(30)
    model = [answers_every_yield(r, y) for r, y in zip(refs, yields, strict=True)]
    res = score_systems({"model": model}, refs, min_pause_ms=400, resamples=200)
    m = res["systems"]["model"]
    assert m["yield_median_latency_s"]["value"] == pytest.approx(0.2) and m["pause_false_takeover"]["value"] == 0.0
    assert m["yield_takeover_1s"]["value"] == 1.0 and m["pause_false_takeover"]["n"] >= 30
    assert res["beyond_curve"] is True
    cmp = res["curve_comparison"]
    assert cmp["beyond_curve_ci"] is True and cmp["ci_overlap"] is False
    assert cmp["latency_margin_s"]["value"] > 0.5  # the rule needs > 1 s of silence to hold through every pause
    assert cmp["rule_false_takeover_at_model_latency"]["value"] == pytest.approx(1.0)
    assert res["beyond_hull"] is True and res["hull_comparison"]["beyond_ci"] is True


@pytest.mark.parametrize("exact", [False, True])
def test_each_pause_rule_lies_on_the_curve_not_beyond(exact: bool) -> None:
    refs, _ = planted(20, seed=1)
    if exact:  # the user's speech timed to the sample: the 100 ms steps differ from each other
        refs = [Reference(labels=r.labels, user_speech_s=speech_spans(r, seed=i)) for i, r in enumerate(refs)]
    curve = None
    for n in SWEEP_MS:
        res = score_systems({"model": [pause_rule(r, n) for r in refs]}, refs, min_pause_ms=400, resamples=50)
        assert res["beyond_curve"] is False, n
        assert res["curve_comparison"]["beyond_curve_ci"] is False
        assert res["beyond_hull"] is False, n
        curve = res["pause_rule_curve"]
        point = next(p for p in curve if p["pause_ms"] == n)
        assert res["systems"]["model"]["yield_median_latency_s"]["value"] == point["yield_median_latency_s"]
    lat = [p["yield_median_latency_s"] for p in curve]
    ft = [p["pause_false_takeover"] for p in curve]
    assert [p["pause_ms"] for p in curve] == list(range(200, 1201, 100))
    assert lat == sorted(lat) and ft == sorted(ft, reverse=True) and ft[0] > ft[-1]


def speech_spans(ref: Reference, seed: int) -> tuple[tuple[float, float], ...]:
    """Intervals in seconds whose micro-turn activity is exactly ref.user: each run starts and ends at a random
    point inside its first and last micro-turn."""
    rng = np.random.default_rng(seed)
    user = ref.user
    edges = np.flatnonzero(np.diff(np.concatenate([[0], user.astype(np.int8), [0]])))
    return tuple(
        (0.2 * a + float(rng.uniform(0, 0.19)), 0.2 * (b - 1) + float(rng.uniform(0.01, 0.2)))
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    )


def test_exact_silence_and_rule_never_speaks_over_the_user() -> None:
    labels = np.zeros(8, np.uint8)
    labels[1:3] |= LABEL_BITS["input_speech"]
    ref = Reference(labels=labels, user_speech_s=((0.25, 0.55),))
    silence = ref.user_silence_s()
    assert math.isnan(silence[0]) and silence[1] == 0.0 and silence[2] == pytest.approx(0.05)
    assert silence[3] == pytest.approx(0.25) and silence[5] == pytest.approx(0.65)
    assert pause_rule(ref, 300).tolist() == [False, False, False, False, True, True, True, True]
    refs, _ = planted(5)
    for r in refs:
        for n in SWEEP_MS:
            assert not (pause_rule(r, n) & r.user).any()


def test_stopping_at_every_user_sound_scores_backchannel_continue_zero() -> None:
    refs, _ = planted(20, seed=2)
    stop = [r.ref & ~r.user for r in refs]  # the data's speech, silent whenever the user makes a sound
    res = score_systems({"model": stop, "data": [r.ref for r in refs]}, refs, resamples=50)
    m, data = res["systems"]["model"], res["systems"]["data"]
    assert m["backchannel_continue"]["n"] > 0 and m["backchannel_continue"]["value"] == 0.0
    assert m["interruption_stop_1s"]["value"] == 1.0  # the trivial win the continue row exposes
    assert data["backchannel_continue"]["value"] == 1.0 and data["shift_hold_bacc"]["value"] == 1.0


def test_shift_hold_constant_answers_score_one_half() -> None:
    refs, _ = planted(20, seed=3)
    assert sum(len(mutual_silences(r)) for r in refs) > 40
    talk = [np.ones(len(r.labels), bool) for r in refs]
    res = score_systems({"model": talk}, refs, resamples=20)
    assert res["systems"]["model"]["shift_hold_bacc"]["value"] == 0.5
    assert res["systems"]["always silent"]["shift_hold_bacc"]["value"] == 0.5
    assert res["systems"]["model"]["pause_false_takeover"]["value"] == 1.0
    assert res["beyond_curve"] is False


def test_few_yields_taken_cannot_buy_a_low_median() -> None:
    """Answering fast at only 40 % of the yields: the median counts the rest as never, so it is infinite and the
    point is not beyond the curve, although its false take-over share is 0."""
    refs, yields = planted(20, seed=4)
    rng = np.random.default_rng(0)
    model = [answers_every_yield(r, [p for p in y if rng.random() < 0.4]) for r, y in zip(refs, yields, strict=True)]
    res = score_systems({"model": model}, refs, min_pause_ms=400, resamples=50)
    m = res["systems"]["model"]
    assert m["yield_median_latency_s"]["value"] is None and m["yield_median_latency_s"]["never"] is True
    assert m["yield_median_latency_started_s"]["value"] == pytest.approx(0.2)
    assert res["beyond_curve"] is False


def test_bootstrap_ci_contains_the_value_and_narrows_with_more_conversations() -> None:
    widths = {}
    for n in (10, 80):
        refs, yields = planted(n, seed=5)
        rng = np.random.default_rng(n)
        model = [
            np.any([answers_every_yield(r, [p], delay=int(rng.integers(0, 9))) for p in y], axis=0)
            for r, y in zip(refs, yields, strict=True)
        ]
        res = score_systems({"model": model}, refs, min_pause_ms=400, resamples=400)
        for key in DOCUMENTED:
            e = res["systems"]["model"][key]
            if e["value"] is not None:
                assert e["ci95"][0] <= e["value"] <= e["ci95"][1], key
        e = res["systems"]["model"]["yield_takeover_1s"]
        widths[n] = e["ci95"][1] - e["ci95"][0]
    assert widths[80] < 0.6 * widths[10]


def test_perspectives_of_one_conversation_are_resampled_together() -> None:
    refs, yields = planted(6, seed=6)
    model = [answers_every_yield(r, y) for r, y in zip(refs, yields, strict=True)]
    a = score_systems({"model": model}, refs, groups=["a", "a", "b", "b", "c", "c"], resamples=100)
    b = score_systems({"model": model}, refs, resamples=100)
    assert a["groups"] == 3 and b["groups"] == 6
    assert a["systems"]["model"]["speak_f1"]["value"] == b["systems"]["model"]["speak_f1"]["value"]


def test_json_has_the_documented_keys() -> None:
    refs, yields = planted(8, seed=7)
    model = [answers_every_yield(r, y) for r, y in zip(refs, yields, strict=True)]
    res = score_systems({"model": model, "data": [r.ref for r in refs]}, refs, resamples=30)
    text = json.dumps(res, allow_nan=False)
    back = json.loads(text)
    for system in ("model", "always silent", "pause rule 600 ms", "data"):
        for key in DOCUMENTED:
            assert set(back["systems"][system][key]) >= {"value", "ci95", "n"}, (system, key)
    assert [set(p) for p in back["pause_rule_curve"]] == [
        {"pause_ms", "yield_median_latency_s", "pause_false_takeover"}
    ] * 11
    assert isinstance(back["beyond_curve"], bool)
    res["table_systems"] = ["model", "always silent", "pause rule 600 ms", "data"]
    text = table(res, systems=res["table_systems"])
    assert "shift/hold" in text and "beyond the pause rule's curve: YES" in text


def test_frontier_bounds() -> None:
    xs, ys = np.array([0.0, 0.2, 0.4]), np.array([1.0, 0.5, 0.1])
    assert frontier(0.3, xs, ys) == (pytest.approx(0.3), "exact")
    assert frontier(0.2, xs, ys) == (0.5, "exact")
    assert frontier(-0.1, xs, ys) == (1.0, "lower")
    assert frontier(0.9, xs, ys) == (0.1, "upper")
    never = np.array([np.inf, 0.5, 0.1])  # the first point never reaches its value (an infinite median latency)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no inf - inf on the way
        assert frontier(0.1, xs, never) == (np.inf, "exact")
        assert frontier(0.3, xs, never) == (pytest.approx(0.3), "exact")


def test_user_pauses_need_the_model_silent() -> None:
    ref, _ = planted_conversation(0)
    for a, b in user_pauses(ref, 400):
        assert not ref.ref[a - 1 : b + 1].any() and b - a >= 2


def test_a_yield_in_overlap_is_timed_from_the_users_end() -> None:
    """The model's turn starts at 8 while the user talks to 9: latencies count from 10, the user's silence; a
    system already speaking then scores 0, the rule N after it (not 'never', as if the user had spoken again)."""
    labels = np.zeros(30, np.uint8)
    labels[0:10] |= LABEL_BITS["input_speech"]
    labels[8:20] |= LABEL_BITS["output_speech"]
    labels[8] |= LABEL_BITS["yield_to_output"]
    ref = Reference(labels=labels)
    from evals.turn_taking import yield_latencies

    assert yield_latencies(ref.ref, ref) == [0.0]
    assert yield_latencies(pause_rule(ref, 600), ref) == [pytest.approx(0.4)]  # 3 silent micro-turns at 12


def test_a_coin_flip_at_every_silence_games_the_median_but_not_the_hull() -> None:
    """Cue-free: at the start of every user silence, speak through it with probability 0.6, else stay silent. The
    median latency is 0 at a 0.6 false take-over share, beyond the median curve; the mean latency (never = 5 s) puts
    it above the rules' convex hull, which random mixtures of rules reach."""
    refs, _ = planted(40, seed=8)
    rng = np.random.default_rng(1)
    model = []
    for r in refs:
        pred = np.zeros(len(r.labels), bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], (~r.user).astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if a > 0 and rng.random() < 0.6:
                pred[a:b] = True
        model.append(pred)
    res = score_systems({"model": model}, refs, min_pause_ms=400, resamples=100)
    m = res["systems"]["model"]
    assert m["yield_median_latency_s"]["value"] == 0.0 and 0.45 < m["pause_false_takeover"]["value"] < 0.75
    assert res["beyond_curve"] is True  # the median reading is fooled ...
    assert res["beyond_hull"] is False  # ... the mean reading against the hull is not
    assert m["yield_mean_latency_s"]["value"] > 1.0


def test_a_rule_slower_than_the_sweep_is_not_beyond_the_hull() -> None:
    """A plain 1.6 s pause rule (cue-free) waits longer than the sweep's longest rule and never takes over in these
    pauses (at most 1.4 s): against a hull ending in a mixture of the 1.2 s rule and silence it would look beyond;
    the hull's longer rules put it on the hull."""
    refs, _ = planted(30, seed=3)
    slow = [pause_rule(r, 1600) for r in refs]
    res = score_systems({"model": slow}, refs, min_pause_ms=400, resamples=50)
    m = res["systems"]["model"]
    assert m["pause_false_takeover"]["value"] == 0.0 and 1.0 < m["yield_mean_latency_s"]["value"] < 5.0
    assert res["beyond_hull"] is False
    assert abs(res["hull_comparison"]["latency_margin_s"]["value"]) < 1e-9  # on the hull: its own point
    assert not any(name.endswith("(hull)") for name in res["systems"])  # the longer rules are not table columns


def test_a_model_and_a_rule_that_never_take_the_turn_have_no_latency_margin() -> None:
    """Point and one resample: the model never takes the turn (infinite median latency) at a false take-over share
    where the rule never does either; the margin there is left out (NaN), not inf - inf with a RuntimeWarning."""
    inf = np.inf
    model = {"yield_median_latency_s": np.array([inf, 0.4]), "pause_false_takeover": np.array([0.1, 0.1])}
    rules = [
        {"yield_median_latency_s": np.array([0.0, 0.0]), "pause_false_takeover": np.array([1.0, 1.0])},
        {"yield_median_latency_s": np.array([0.4, 0.4]), "pause_false_takeover": np.array([0.5, 0.5])},
        {"yield_median_latency_s": np.array([inf, inf]), "pause_false_takeover": np.array([0.0, 0.0])},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compare_to_curve(model, rules)
    assert res["beyond_curve"] is False
