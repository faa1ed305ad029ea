"""Smoke test: the tiny config's first steps on a fixed synthetic dataset reproduce a stored loss curve.

Regenerate the stored curve (after a deliberate change to the model, the loss or the data path) with

    MICROTURN_REGEN_LOSS_CURVE=1 .venv/bin/python -m pytest -q tests/trainer/test_loss_curve.py

and say in the commit why the curve moved.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from trainer.config import preset
from trainer.train import train

from .synthetic import write_dataset

CURVE_FILE = Path(__file__).parent / "data" / "loss_curve_tiny.json"
REGEN_ENV = "MICROTURN_REGEN_LOSS_CURVE"
STEPS = 8
KEYS = ("loss", "text", "dmel", "flow", "aux", "z", "grad_norm")
RTOL = 1e-4
"""Relative tolerance per step and key. Measured (torch 2.8, x86 CPU): 1 instead of 2 threads moves the curve by at most
1e-6 relative (grad_norm; the losses ~1e-7), float sums in another order; raising the learning rate by 1% moves
every key by 5e-4 (flow) to 1e-2 (grad_norm) within 8 steps, so a real change of the training maths fails. Another
CPU family may round differently (more than 1e-4 would be news: regenerate and say so)."""


def run_curve(data_dir: str, out_dir: str) -> list[dict]:
    cfg = dataclasses.replace(preset("tiny"), log_interval=1)  # the preset's schedule, stopped after STEPS
    return train(cfg, data_dir, out_dir, device="cpu", stop_at=STEPS, progress=False)


def test_tiny_loss_curve_matches_the_stored_one(tmp_path):
    digest = write_dataset(tmp_path / "data", seed=0)
    records = run_curve(str(tmp_path / "data"), str(tmp_path / "run"))
    curve = {key: [r[key] for r in records] for key in KEYS}
    if os.environ.get(REGEN_ENV):
        CURVE_FILE.write_text(
            json.dumps(
                {
                    "about": "tests/trainer/test_loss_curve.py: tiny preset, first steps on write_dataset(seed=0); "
                    f"regenerate with {REGEN_ENV}=1",
                    "dataset_sha256": digest,
                    "steps": STEPS,
                    "torch": torch.__version__,
                    **curve,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
        pytest.skip(f"wrote {CURVE_FILE}")
    stored = json.loads(CURVE_FILE.read_text(encoding="utf-8"))
    assert digest == stored["dataset_sha256"], (
        f"the synthetic dataset changed: fix tests/trainer/synthetic.py or regenerate the curve ({REGEN_ENV}=1)"
    )
    assert len(records) == stored["steps"] == STEPS
    for key in KEYS:
        assert curve[key] == pytest.approx(stored[key], rel=RTOL), key
    assert curve["loss"][-1] < 0.9 * curve["loss"][0]  # and it is a curve that falls
