"""Issue 23.11: `train --stop_at K` then a rerun must end with the weights of an uninterrupted run, also when the
rerun's process has another CPU thread count (sums split by thread round differently; on this machine 12 steps of
the tiny preset differ by 5e-6 between 1 and 2 threads). The checkpoint records the count and a resume on CPU
takes it.

    PYTHONPATH=. python -m pytest -q tests/trainer/test_adversarial_resume.py
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from trainer import checkpoint
from trainer.config import preset
from trainer.train import train


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPU threads to differ from one")
def test_resume_with_another_thread_count_is_bit_exact(demo_dataset, tmp_path, threads) -> None:
    cfg = preset("tiny")
    cfg = dataclasses.replace(
        cfg,
        steps=6,
        checkpoint_interval=100,
        data=dataclasses.replace(cfg.data, batch_size=2, frame_patches=8),
        optim=dataclasses.replace(cfg.optim, warmup_steps=2),
    )
    torch.set_num_threads(2)
    train(cfg, demo_dataset, str(tmp_path / "a"), device="cpu", progress=False)
    train(cfg, demo_dataset, str(tmp_path / "b"), device="cpu", stop_at=3, progress=False)
    assert checkpoint.load(tmp_path / "b" / checkpoint.CHECKPOINT_FILE)["cpu_threads"] == 2
    torch.set_num_threads(1)  # the rerun's environment (OMP_NUM_THREADS, a CPU set) differs
    train(cfg, demo_dataset, str(tmp_path / "b"), device="cpu", progress=False)
    assert torch.get_num_threads() == 2
    a = checkpoint.load(tmp_path / "a" / checkpoint.CHECKPOINT_FILE)["model"]
    b = checkpoint.load(tmp_path / "b" / checkpoint.CHECKPOINT_FILE)["model"]
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), (name, float((tensor - b[name]).abs().max()))
