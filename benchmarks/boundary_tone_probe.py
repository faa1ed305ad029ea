"""Is a clause's final intonation in the audio a model hears? ',' against '.' endings of the same texts, per voice.

    PYTHONPATH=. .venv/bin/python benchmarks/boundary_tone_probe.py fl-rms fl-kal16 fe-ked es-029-m2
    PYTHONPATH=. .venv/bin/python benchmarks/boundary_tone_probe.py --boundary_tones fl-rms fl-kal16 fe-ked

For each voice, `--texts` statements of `synth.grammar` (training topics) are spoken once ending in ',' and once in
'.' (`synth.engines.Synthesiser.clause`, with `--boundary_tones` as `synth dialogues --boundary_tones`); the
probe of evals/cue_probe.py (its features, `onset_features`: the last 300 ms of voiced dMel frames before the
clause's end, 50 ms blocks; its L2 logistic regression) is fitted on half the texts and scored on the other half,
both ways. Printed: the two held-out ROC AUCs (0.5: the endings sound alike; 1.0: always told apart). It measures
the cue within one voice; whether a model carries it to voices it never heard is what
`benchmarks/cue_probe_voices.py` and `behaviour_demo.py` measure. A figure, not a test.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from evals.cue_probe import decision, fit_logistic, onset_features, roc_auc
    from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN, dmel_codes
    from synth import grammar
    from synth.engines import VOICES_BY_NAME, Synthesiser

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("voices", nargs="+", help="voice names of synth.engines.VOICE_BANK (e.g. fl-rms)")
    p.add_argument("--texts", type=int, default=80, help="distinct statements per voice (default 80)")
    p.add_argument("--boundary_tones", action="store_true", help="as synth dialogues --boundary_tones")
    args = p.parse_args()
    unknown = [v for v in args.voices if v not in VOICES_BY_NAME]
    if unknown:
        p.error(f"unknown voices {unknown}; known: {', '.join(sorted(VOICES_BY_NAME))}")
    rng = random.Random(0)
    texts: set[str] = set()
    while len(texts) < args.texts:
        topic = grammar.TOPICS[rng.choice(grammar.TRAIN_TOPICS)]
        texts.add(" ".join(grammar.statement(rng, topic)).rstrip(".?,"))
    ordered = sorted(texts)
    pad = np.zeros(1600, np.float32)
    synth = Synthesiser()
    try:
        for name in args.voices:
            x, y, fold = [], [], []
            for i, text in enumerate(ordered):
                for label, mark in ((0, ","), (1, ".")):
                    audio, _ = synth.clause(text + mark, VOICES_BY_NAME[name], boundary_tone=args.boundary_tones)
                    codes = dmel_codes(np.concatenate([pad, audio])).reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
                    x.append(onset_features(codes, len(codes)))  # the voiced frames before the stream's end
                    y.append(label)
                    fold.append(i % 2)
            xs, ys, folds = np.asarray(x, np.float32), np.asarray(y), np.asarray(fold)
            aucs = []
            for f in (0, 1):
                model = fit_logistic(xs[folds != f], ys[folds != f])
                aucs.append(roc_auc(decision(model, xs[folds == f]), ys[folds == f]))
            print(f"{name:12s} ',' vs '.' held-out AUC {aucs[0]:.3f} / {aucs[1]:.3f} ({len(ordered)} texts)")
    finally:
        synth.close()


if __name__ == "__main__":
    main()
