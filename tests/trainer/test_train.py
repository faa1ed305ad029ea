"""Training loop: the tiny config overfits on CPU, resume is bit-exact, the CLI entry points work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cli.train import cmd_eval as eval_main
from cli.train import cmd_train as train_main
from trainer import checkpoint
from trainer.config import preset
from trainer.data import Loader
from trainer.evaluate import evaluate
from trainer.model import Model
from trainer.train import train

OVERFIT_STEPS = 40
OVERFIT_FACTOR = 2.5
"""Measured on one demo sample (seed 0, 2 CPU threads, torch 2.8): text + dMel cross-entropy over the sample falls
from 8.84 to 2.84 nats (factor 3.1) in 40 steps (3.5 after 60); a trainer that does not learn stays near 1."""


def _ce(model: Model, data: str, cfg) -> float:
    r = evaluate(model, Loader(data, cfg.data, epochs=1, shuffle=False), torch.device("cpu"))
    return r["text"] + r["dmel"]


def test_tiny_overfits_one_demo_sample(one_sample_dataset, tmp_path):
    cfg = dataclasses.replace(preset("tiny"), steps=OVERFIT_STEPS, log_interval=10)
    torch.manual_seed(cfg.seed)
    before = _ce(Model(cfg), one_sample_dataset, cfg)
    records = train(cfg, one_sample_dataset, str(tmp_path), device="cpu", progress=False)
    model = Model(cfg)
    model.load_state_dict(checkpoint.load(tmp_path / checkpoint.CHECKPOINT_FILE)["model"])
    after = _ce(model, one_sample_dataset, cfg)
    assert before / after >= OVERFIT_FACTOR, (before, after, [r["loss"] for r in records])
    assert records[-1]["epoch"] >= 3  # several passes over the sample: this is memorisation


def _strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "tokens_per_s"}


@pytest.mark.parametrize("augment", [0, 2], ids=["plain", "augmented"])
def test_resume_is_bit_exact(demo_dataset, tmp_path, augment):
    """6 steps straight == 3 steps, checkpoint, a fresh process state, 3 more: losses and parameters bit for bit
    (also with the heard dMel varied per example, trainer/augment.py, whose draws must repeat on resume)."""
    cfg = preset("tiny")  # with fewer patch slots and examples per batch, to keep the test short
    varied = {"augment_channels": augment, "augment_levels": augment // 2, "augment_tilt": augment}
    cfg = dataclasses.replace(
        cfg,
        steps=6,
        log_interval=1,
        checkpoint_interval=100,
        data=dataclasses.replace(cfg.data, num_workers=2, batch_size=2, frame_patches=8, **varied),
        optim=dataclasses.replace(cfg.optim, grad_accum=2, warmup_steps=2),
    )
    straight = train(cfg, demo_dataset, str(tmp_path / "a"), device="cpu", progress=False)
    head = train(cfg, demo_dataset, str(tmp_path / "b"), device="cpu", stop_at=3, progress=False)
    torch.manual_seed(1234)  # the restart must not depend on the state the process happens to be in
    tail = train(cfg, demo_dataset, str(tmp_path / "b"), device="cpu", progress=False)
    assert [r["step"] for r in head + tail] == list(range(1, 7))
    assert [_strip(r) for r in straight] == [_strip(r) for r in head + tail]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [_strip(json.loads(ln)) for ln in lines] == [_strip(r) for r in straight]
    a = checkpoint.load(tmp_path / "a" / checkpoint.CHECKPOINT_FILE)
    b = checkpoint.load(tmp_path / "b" / checkpoint.CHECKPOINT_FILE)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(pa[k], pb[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert a["loaders"] == b["loaders"]
    rec = straight[-1]
    for key in ("text", "dmel", "flow", "aux", "z", "grad_norm", "tokens_per_s", "expert_load", "router_entropy"):
        assert key in rec
    assert len(rec["expert_load"]) == cfg.model.layers and len(rec["expert_load"][0]) == cfg.model.experts


def test_cli_entry_points(one_sample_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "--data",
        one_sample_dataset,
        "--out",
        str(out),
        "--config",
        "tiny",
        "--steps",
        "2",
        "--seed",
        "1",
        "--moe-impl",
        "loop",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert train_main(args) == 0
    assert (out / "checkpoint.pt").exists() and len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert (
        eval_main(
            [
                "--checkpoint",
                str(out / "checkpoint.pt"),
                "--data",
                one_sample_dataset,
                "--max-batches",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "text  cross-entropy" in printed and "dmel  cross-entropy" in printed and "flow" in printed
    with pytest.raises(ValueError, match="another config|same flags"):
        train_main([*args[:-2], "--lr", "0.5", "--device", "cpu"])  # resuming into a run made with other flags
    with pytest.raises(ValueError, match="--steps"):
        train_main(["--data", one_sample_dataset, "--out", str(tmp_path / "x"), "--steps", "0"])


def test_checkpoint_is_weights_only(tmp_path):
    path = Path(tmp_path) / "c.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(2)}, "rng": checkpoint.rng_state(), "step": 3})
    state = checkpoint.load(path)
    checkpoint.set_rng_state(state["rng"])
    assert state["step"] == 3 and not list(Path(tmp_path).glob(".*tmp*"))


def test_max_seconds_stops_with_a_checkpoint(tmp_path):
    """Out of time after the first step: that step is logged and checkpointed; a later call resumes from it."""
    from .synthetic import write_dataset

    write_dataset(tmp_path / "data", seed=2, samples=2, window=8, shards=1)
    base = preset("tiny")
    cfg = dataclasses.replace(
        base, steps=5, log_interval=5, data=dataclasses.replace(base.data, frame_patches=0, batch_size=2)
    )
    records = train(cfg, str(tmp_path / "data"), str(tmp_path / "run"), device="cpu", progress=False, max_seconds=0)
    assert [r["step"] for r in records] == [1]
    assert checkpoint.load(tmp_path / "run" / checkpoint.CHECKPOINT_FILE)["step"] == 1
    records = train(cfg, str(tmp_path / "data"), str(tmp_path / "run"), device="cpu", progress=False, stop_at=3)
    assert [r["step"] for r in records] == [3]
