"""Behaviour scoring on planted per-micro-turn streams (evals/behaviour.py).

PYTHONPATH=. python -m pytest -q tests/evals/test_behaviour.py
"""

from __future__ import annotations

import numpy as np
import pytest

from evals.behaviour import Reference, always_silent, pause_rule, score, user_pauses
from schemas.sample import LABEL_BITS

K = 70


def planted() -> Reference:
    """User 0-9, yield; data model 12-24; user 27-31, a 1 s pause 32-36, user 37-40, yield; data model 43-51, user
    interrupts at 48 and talks to 60; model backchannel at 55-56."""
    labels = np.zeros(K, np.uint8)
    user = np.zeros(K, bool)
    model = np.zeros(K, bool)
    user[0:10] = user[27:32] = user[37:41] = user[48:61] = True
    model[12:25] = model[43:52] = model[55:57] = True
    labels[user] |= LABEL_BITS["input_speech"]
    labels[model] |= LABEL_BITS["output_speech"]
    labels[[12, 43]] |= LABEL_BITS["yield_to_output"]
    labels[48] |= LABEL_BITS["interruption"]
    labels[55] |= LABEL_BITS["output_backchannel"]
    return Reference(labels=labels)


def test_answering_every_yield_after_400_ms() -> None:
    ref = planted()
    pred = np.zeros(K, bool)
    pred[12:25] = True  # the user's silence starts at 10: +2 micro-turns = 0.4 s
    pred[43:50] = True  # silence starts at 41; stops at 50, 0.4 s after the interruption at 48
    r = score([pred], [ref])
    assert r["yields"] == 2 and r["yield_takeover_1s"] == 1.0
    assert r["yield_median_latency_s"] == pytest.approx(0.4)
    assert r["interruptions_eligible"] == 1 and r["interruption_stop_1s"] == 1.0
    assert r["interruption_median_stop_s"] == pytest.approx(0.4)
    assert r["pauses"] == 1 and r["pause_false_takeover"] == 0.0 and r["pause_handling"] == 1.0


def test_always_talking_scores_pause_handling_zero() -> None:
    ref = planted()
    r = score([np.ones(K, bool)], [ref])
    assert r["pause_handling"] == 0.0 and r["pause_false_takeover"] == 1.0
    assert r["speak_recall"] == 1.0 and r["speak_precision"] == pytest.approx(ref.ref.mean())
    assert r["interruption_stop_1s"] == 0.0 and r["interruption_median_stop_s"] is None  # never stops


def test_baselines_and_data() -> None:
    ref = planted()
    assert user_pauses(ref) == [(32, 37)]
    silent = score([always_silent(ref)], [ref])
    assert silent["speak_recall"] == 0.0 and silent["yield_takeover_1s"] == 0.0 and silent["pause_handling"] == 1.0
    assert silent["interruptions_eligible"] == 0 and silent["backchannels_per_min"] == 0.0
    rule = pause_rule(ref, 600)
    # user silent from 10: 600 ms of silence at the end of micro-turn 12, which the rule (like the model) has heard
    assert not rule[:12].any() and rule[12]
    r = score([rule], [ref])
    assert r["yield_median_latency_s"] == pytest.approx(0.4) and r["pause_false_takeover"] == 1.0
    data = score([ref.ref], [ref])
    assert data["speak_f1"] == 1.0 and data["yield_median_latency_s"] == pytest.approx(0.4)
    assert data["backchannels_per_min"] == pytest.approx(1 / (32 * 0.2 / 60))  # 32 user micro-turns
    assert data["shift_hold_bacc"] == 1.0 and data["backchannel_continue"] is None  # no user backchannel here


def test_speak_decision_reads_the_head_where_the_silence_starts() -> None:
    from evals.behaviour import speak_decision

    ref = planted()  # silences start at 10 (yield), 32 (pause, 1 s) and 41 (yield)
    silent = np.zeros(K, bool)
    probs = np.full(K, 0.2, np.float32)
    probs[[10, 41]] = 0.9  # high where a yield's silence starts, low at the pause
    d = speak_decision([probs], [ref], [silent])
    assert d["auc"] == 1.0 and (d["yields"], d["pauses"]) == (2, 1)
    assert d["mean_p_yield"] == pytest.approx(0.9) and d["mean_p_pause"] == pytest.approx(0.2)
    probs[32] = 0.95  # the pause now looks most like a yield
    assert speak_decision([probs], [ref], [silent])["auc"] == 0.0
    talking = silent.copy()
    talking[40] = True  # the model already speaks before the second yield's silence: not a decision to start
    assert speak_decision([probs], [ref], [talking])["yields"] == 1
    assert speak_decision([None], [ref], [silent]) is None  # no speak head


def test_scores_by_label_score_each_labels_conversations_alone() -> None:
    from evals.behaviour import scores_by_label

    refs = [planted() for _ in range(4)]
    good = np.zeros(K, bool)
    good[12:25] = good[43:50] = True  # every yield after 0.4 s, never in the pause, stops at the interruption
    preds = [good, good, np.ones(K, bool), np.ones(K, bool)]
    by = scores_by_label(preds, refs, ["a", "b", "c", "d"], ["fine", "fine", "talks", "talks"], resamples=50)
    assert sorted(by) == ["fine", "talks"] and by["fine"]["conversations"] == 2
    assert by["fine"]["model"]["pause_false_takeover"]["value"] == 0.0
    assert by["fine"]["model"]["interruption_stop_1s"] == {"value": 1.0, "ci95": [1.0, 1.0], "n": 2}
    assert by["talks"]["model"]["pause_false_takeover"]["value"] == 1.0
    assert by["talks"]["model"]["interruption_stop_1s"]["value"] == 0.0
    assert by["fine"]["beyond_curve"] is True and by["talks"]["beyond_curve"] is False
    with pytest.raises(ValueError, match="3 labels for 4"):
        scores_by_label(preds, refs, ["a", "b", "c", "d"], ["x", "y", "z"])
