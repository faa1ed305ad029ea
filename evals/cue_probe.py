"""Does a dataset carry a turn-taking cue in its audio? A linear probe on the user's last voiced dMel frames.

    python -c "from evals.cue_probe import PROBE_FRAMES; print(PROBE_FRAMES)"

At every user silence that ends in the model taking the turn (a `yield_to_output` onset) and every within-turn pause
(`evals.turn_taking.user_pauses`), take the user's last `frames` voiced dMel frames before the silence (12.5 ms
each, `schemas.dmel.speech_frames`; dequantised codes averaged over blocks of 4 frames: frames / 4 x 80 features)
and ask a logistic regression, fitted on one set of conversations, to tell yields (1) from pauses (0) on another.
The held-out ROC AUC says how much the audio before a silence tells about what follows (0.5: nothing):

- a set with natural cues should score well above 0.5 on held-out voices and texts, so a model *can* beat a pause
  rule on it;
- the cue-free control (`synth dialogues --cues none`) must score about 0.5; if it does not, the endings of yields
  and pauses differ in something other than the silence (a leak), and a model beating the rule there proves nothing.

The probe sees exactly the frames a streaming model has heard when the silence starts, aligned to that moment, so it
is an upper bound on nothing and a lower bound on what a model could learn; it is a data audit, not a baseline a
model is scored against. The regression is plain full-batch L-BFGS on standardised features with an L2 penalty
(torch), deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evals.turn_taking import Reference, user_pauses
from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN, checked_codes, dequantise_dmel, speech_frames

PROBE_FRAMES = 24
"""Voiced frames before a silence the probe reads: 24 x 12.5 ms = 300 ms."""
BLOCK_FRAMES = 4
"""Frames averaged into one feature block (50 ms)."""
L2 = 1.0
"""Penalty on the squared weights, per example (standardised features)."""


def silence_onsets(ref: Reference, *, min_pause_ms: float = 400.0) -> list[tuple[int, int]]:
    """(micro-turn where the user's silence starts, 1 for a yield to the model / 0 for a within-turn pause), in
    time order. Overlapping yields (the model starts before the user stops) are left out: no silence precedes them."""
    user = ref.user
    out = []
    for e in ref.onsets("yield_to_output"):
        y = int(e)
        if user[y]:
            continue
        while y > 0 and not user[y - 1]:
            y -= 1
        out.append((y, 1))
    out += [(a, 0) for a, _ in user_pauses(ref, min_pause_ms)]
    return sorted(out)


def onset_features(user_dmel: np.ndarray, microturn: int, frames: int = PROBE_FRAMES) -> np.ndarray | None:
    """The probe's features at a silence starting in `microturn`: the last `frames` voiced frames of the user's dMel
    (K, 16, 80) before the micro-turn's start, averaged over blocks of BLOCK_FRAMES, flattened ((frames / 4) * 80,)
    float32 in log10 units; None when fewer voiced frames precede it."""
    if frames % BLOCK_FRAMES:
        raise ValueError(f"frames must be a multiple of {BLOCK_FRAMES}, got {frames}")
    codes = checked_codes(user_dmel).reshape(-1, DMEL_CHANNELS)[: microturn * FRAMES_PER_MICROTURN]
    voiced = np.flatnonzero(speech_frames(codes))
    if len(voiced) == 0 or voiced[-1] + 1 < frames:
        return None
    end = int(voiced[-1]) + 1
    levels = dequantise_dmel(codes[end - frames : end])
    return levels.reshape(frames // BLOCK_FRAMES, BLOCK_FRAMES, DMEL_CHANNELS).mean(1).ravel().astype(np.float32)


def probe_set(
    convs: Sequence[tuple[np.ndarray, Reference]], frames: int = PROBE_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, F) and labels (n,) of every silence onset of (user dMel, Reference) pairs."""
    xs, ys = [], []
    for dmel, ref in convs:
        for k, label in silence_onsets(ref):
            f = onset_features(dmel, k, frames)
            if f is not None:
                xs.append(f)
                ys.append(label)
    width = (frames // BLOCK_FRAMES) * DMEL_CHANNELS
    return np.asarray(xs, np.float32).reshape(-1, width), np.asarray(ys, np.int64)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half): the chance that a random positive outscores a random negative;
    None without both classes."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return float(wins / (len(pos) * len(neg)))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = L2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L2-penalised logistic regression on standardised features: (mean, scale, weights with the bias last)."""
    import torch

    mean, scale = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy(((x - mean) / scale).astype(np.float64))
    xt = torch.cat([xt, torch.ones(len(xt), 1, dtype=torch.float64)], 1)
    yt = torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w, yt) + l2 * (w[:-1] ** 2).sum() / len(xt)
        loss.backward()
        return loss

    opt.step(closure)
    return mean, scale, w.detach().numpy()


def decision(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The fitted regression's logits for features x (n, F)."""
    mean, scale, w = model
    return ((x - mean) / scale) @ w[:-1] + w[-1]


def cue_probe(
    train: Sequence[tuple[np.ndarray, Reference]],
    held_out: Sequence[tuple[np.ndarray, Reference]],
    *,
    frames: int = PROBE_FRAMES,
) -> dict[str, Any]:
    """Fit on `train`, score on `held_out` ((user dMel (K, 16, 80), Reference) per conversation perspective).

    Returns {"train_auc", "heldout_auc", "train_onsets", "heldout_onsets", "heldout_yield_share", "frames"}."""
    x_tr, y_tr = probe_set(train, frames)
    x_te, y_te = probe_set(held_out, frames)
    if len(set(y_tr.tolist())) < 2:
        raise ValueError(f"the training set needs yields and pauses; it has {len(y_tr)} onsets of one kind")
    model = fit_logistic(x_tr, y_tr)
    return {
        "train_auc": roc_auc(decision(model, x_tr), y_tr),
        "heldout_auc": roc_auc(decision(model, x_te), y_te) if len(x_te) else None,
        "train_onsets": int(len(y_tr)),
        "heldout_onsets": int(len(y_te)),
        "heldout_yield_share": float(y_te.mean()) if len(y_te) else None,
        "frames": frames,
    }


__all__ = ["PROBE_FRAMES", "cue_probe", "fit_logistic", "onset_features", "probe_set", "roc_auc", "silence_onsets"]
