"""The data's turn-taking cue per user voice: evals/cue_probe.py's linear probe, fitted on the training dataset of a
behaviour-demo data directory, scored on each held-out (and each training) user voice alone.

    PYTHONPATH=. .venv/bin/python benchmarks/cue_probe_voices.py OUT/data/dialogues-natural

DIR is what `benchmarks/behaviour_demo.py --stage data` writes (train/ and eval/ datasets, bundles/train and
bundles/eval with each conversation's synth record). For every perspective the user is the speaker not playing the
model; its voice is read from the bundle. Printed: the probe's ROC AUC for yields vs within-turn pauses from the
user's last 300 ms of voiced frames (0.5 = the audio tells nothing), the silences scored and how many are yields.
A figure, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def by_voice(d: Path, dataset: str, split: str) -> dict[str, list[tuple[np.ndarray, Any]]]:
    """(user dMel (K, 16, 80), Reference) of every perspective of `d`/`dataset`, grouped by the user's voice."""
    from evals.behaviour import reference_of
    from evals.respond import conversations_from_dataset

    out: dict[str, list[tuple[np.ndarray, Any]]] = defaultdict(list)
    for c in conversations_from_dataset(str(d / dataset)):
        cid = c.conversation_id or c.name
        synth = json.loads((d / "bundles" / split / cid / "bundle.json").read_text()).get("synth") or {}
        users = [v for s, v in (synth.get("speaker_voices") or {}).items() if s != c.perspective]
        out[users[0] if len(users) == 1 else "?"].append((np.asarray(c.sample["input.dmel.npy"]), reference_of(c)))
    return out


def main(argv: list[str] | None = None) -> int:
    from evals.cue_probe import decision, fit_logistic, probe_set, roc_auc

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a behaviour-demo data directory (OUT/data/<source>-<cues>)")
    args = p.parse_args(argv)
    d = Path(args.data)
    train, held = by_voice(d, "train", "train"), by_voice(d, "eval", "eval")
    x, y = probe_set([pair for pairs in train.values() for pair in pairs])
    model = fit_logistic(x, y)
    fit_auc = roc_auc(decision(model, x), y)
    print(f"probe fitted on {len(y)} training silences ({int(y.sum())} yields): train AUC {fit_auc:.3f}")
    for name, groups in (("held-out", held), ("training", train)):
        for voice, pairs in sorted(groups.items()):
            xv, yv = probe_set(pairs)
            auc = roc_auc(decision(model, xv), yv) if len(yv) else None
            cell = "-" if auc is None else f"{auc:.3f}"
            print(f"{name:9s} {voice:12s} AUC {cell:>6s}  silences {len(yv):4d}  yields {int(yv.sum()):4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
