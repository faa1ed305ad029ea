"""The cue probe: yields and pauses told apart from the user's last voiced frames, and nothing where there is no cue.

PYTHONPATH=. python -m pytest -q tests/evals/test_cue_probe.py
"""

from __future__ import annotations

import numpy as np
import pytest

from evals.cue_probe import cue_probe, onset_features, roc_auc, silence_onsets
from evals.turn_taking import Reference
from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN, LEVELS, SILENCE_CODE
from schemas.sample import LABEL_BITS

USER, MODEL, YIELD = LABEL_BITS["input_speech"], LABEL_BITS["output_speech"], LABEL_BITS["yield_to_output"]


def dialogue(seed: int, *, cue: bool, turns: int = 12) -> tuple[np.ndarray, Reference]:
    """User turns of 4 micro-turns, each followed by a yield (the model answers for 2 micro-turns after 1 silent one)
    or a within-turn pause of 3 silent micro-turns; with `cue`, the last 100 ms before a yield are loud in the low
    channels and before a pause in the high ones, else every turn ends alike."""
    rng = np.random.default_rng(seed)
    labels, frames = [], []
    for _ in range(turns):
        is_yield = bool(rng.integers(0, 2))
        speech = rng.integers(8, 12, (4 * FRAMES_PER_MICROTURN, DMEL_CHANNELS)).astype(np.uint8)
        if cue:
            half = slice(0, 40) if is_yield else slice(40, 80)
            speech[-8:, half] = 15
        labels += [USER] * 4
        frames.append(speech)
        gap = [0, MODEL | YIELD, MODEL] if is_yield else [0, 0, 0]
        labels += gap
        frames.append(np.full((3 * FRAMES_PER_MICROTURN, DMEL_CHANNELS), SILENCE_CODE, np.uint8))
    labels += [USER]  # the user speaks last, so the final pause is one
    frames.append(np.full((FRAMES_PER_MICROTURN, DMEL_CHANNELS), 10, np.uint8))
    dmel = np.concatenate(frames).reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
    return dmel, Reference(labels=np.asarray(labels, np.uint8))


def test_roc_auc_counts_ties_half() -> None:
    assert roc_auc(np.array([3, 2, 1, 0]), np.array([1, 1, 0, 0])) == 1.0
    assert roc_auc(np.array([0, 1, 2, 3]), np.array([1, 1, 0, 0])) == 0.0
    assert roc_auc(np.array([1, 1, 1, 1]), np.array([1, 0, 1, 0])) == 0.5
    assert roc_auc(np.array([2, 1, 2]), np.array([1, 0, 0])) == 0.75
    assert roc_auc(np.array([1.0]), np.array([1])) is None


def test_onsets_and_features_are_aligned_to_the_last_voiced_frame() -> None:
    dmel, ref = dialogue(0, cue=True, turns=4)
    onsets = silence_onsets(ref)
    assert [k for k, _ in onsets] == [4, 11, 18, 25]  # every turn's first silent micro-turn
    kinds = [y for _, y in onsets]
    assert set(kinds) == {0, 1}
    k, label = onsets[0]
    f = onset_features(dmel, k).reshape(-1, DMEL_CHANNELS)
    assert f.shape == (6, DMEL_CHANNELS)
    loud = slice(0, 40) if label else slice(40, 80)
    np.testing.assert_allclose(f[-2:, loud], LEVELS[15])  # the last 8 frames, as two blocks of 4
    assert onset_features(dmel, 1) is None  # 16 voiced frames before micro-turn 1: fewer than 24
    with pytest.raises(ValueError, match="multiple of 4"):
        onset_features(dmel, k, frames=10)


def test_a_planted_cue_is_found_on_held_out_conversations_and_a_control_shows_none() -> None:
    train = [dialogue(s, cue=True) for s in range(6)]
    held = [dialogue(100 + s, cue=True) for s in range(3)]
    found = cue_probe(train, held)
    assert found["heldout_auc"] == 1.0 and found["train_auc"] == 1.0
    assert found["heldout_onsets"] == 3 * 12 and 0 < found["heldout_yield_share"] < 1
    control = cue_probe([dialogue(s, cue=False) for s in range(6)], [dialogue(100 + s, cue=False) for s in range(3)])
    assert 0.3 < control["heldout_auc"] < 0.7  # random endings: nothing to find
    with pytest.raises(ValueError, match="yields and pauses"):
        cue_probe([dialogue(0, cue=True, turns=1)], held)
