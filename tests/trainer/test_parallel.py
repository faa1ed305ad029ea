"""Data-parallel training: 2 CPU ranks under torchrun (gloo) = 1 process over the same global batch.

The 1-process reference reads the same data: a Loader of 1 rank with 2 DataLoader workers splits the stream into
the same 2 slots as 2 ranks with none (slot g = rank * workers + worker), and takes their batches alternately, so
its step of 2 micro-batches is micro-batch 0 of each rank (and the flow noise of micro-batch i of rank r is that of
micro-batch i * 2 + r, see trainer/train.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import checkpoint, parallel
from trainer.config import preset
from trainer.model import Model
from trainer.train import train

REPO = Path(__file__).resolve().parents[2]

PARAM_ATOL = 1e-5
"""Largest |1-rank - 2-rank| parameter difference allowed. The ranks' gradients are summed by gloo's all-reduce instead
of accumulated in one .grad, so a float sum may round differently. Measured (torch 2.8, CPU): 0, bit for bit, when the
reference also runs 1 thread (as here); 2.6e-6 after 4 steps when it runs 2 threads (GEMMs split otherwise). A
wrong data split, normalisation or noise seed moves parameters by about one AdamW step (lr = 3e-4..3e-3) or more."""
LOSS_RTOL = 1e-5


def _torchrun(args: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "microturn_cli",
        "train",
        "--device",
        "cpu",
        "--no-progress",
        *args,
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def _reference(data: str, out: Path, *, steps: int, batch_size: int, grad_accum: int) -> list[dict]:
    cfg = preset("tiny")
    cfg = dataclasses.replace(
        cfg,
        steps=steps,
        log_interval=1,
        data=dataclasses.replace(cfg.data, batch_size=batch_size, num_workers=2),
        optim=dataclasses.replace(cfg.optim, grad_accum=grad_accum),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank (OMP_NUM_THREADS=1)
    try:
        return train(cfg, data, str(out), device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)


def _compare(ref_dir: Path, dp_dir: Path, ref_records: list[dict]) -> float:
    ref = checkpoint.load(ref_dir / checkpoint.CHECKPOINT_FILE)
    dp = checkpoint.load(dp_dir / checkpoint.CHECKPOINT_FILE)
    digests = dp["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # the two ranks hold bit-identical parameters
    model = Model(preset("tiny"))
    model.load_state_dict(dp["model"])
    assert parallel.parameter_digest(model) == digests[0]  # ... which are the saved ones
    assert len(dp["loaders"]) == 2 and [s["rank"] for s in dp["loaders"]] == [0, 1]
    diff = max(float((ref["model"][k] - dp["model"][k]).abs().max()) for k in ref["model"])
    moved = max(float((ref["model"][k] - Model(preset("tiny")).state_dict()[k]).abs().max()) for k in ref["model"])
    assert diff <= PARAM_ATOL, diff
    assert moved > 100 * PARAM_ATOL  # the runs trained: the tolerance is far below what a step changes
    lines = [json.loads(ln) for ln in (dp_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [r["step"] for r in ref_records]
    for a, b in zip(ref_records, lines, strict=True):
        assert a["epoch"] == b["epoch"] and a["targets_text"] == b["targets_text"]
        assert a["targets_dmel"] == b["targets_dmel"] and a["active_tokens"] == b["active_tokens"]
        for key in ("loss", "text", "dmel", "flow", "aux", "z", "grad_norm"):
            assert abs(a[key] - b[key]) <= LOSS_RTOL * abs(a[key]) + 1e-9, (key, a[key], b[key])
    print(f"max |param(1 rank) - param(2 ranks)| = {diff:.3g}")
    return diff


def test_two_ranks_equal_one_process_with_the_same_global_batch(demo_dataset, tmp_path):
    """2 ranks x 1 micro-batch of 2 examples == 1 process x 2 micro-batches, 4 steps."""
    steps, bs = 4, 2
    ref_records = _reference(demo_dataset, tmp_path / "ref", steps=steps, batch_size=bs, grad_accum=2)
    _torchrun(
        [
            "--data",
            demo_dataset,
            "--out",
            str(tmp_path / "dp"),
            "--steps",
            str(steps),
            "--batch-size",
            str(bs),
            "--grad-accum",
            "1",
            "--num-workers",
            "0",
            "--log-interval",
            "1",
        ]
    )
    _compare(tmp_path / "ref", tmp_path / "dp", ref_records)


def test_short_rank_pads_and_resume_keeps_every_rank_loader(one_sample_dataset, tmp_path):
    """One sample: rank 1's share is empty, so it pads every step with masked batches; epochs still advance together
    (about 5 batches per epoch, 7 steps); stopped after 3 steps and resumed by a new torchrun."""
    steps, bs = 7, 8
    ref_records = _reference(one_sample_dataset, tmp_path / "ref", steps=steps, batch_size=bs, grad_accum=1)
    assert ref_records[-1]["epoch"] >= 1  # the run crosses an epoch boundary
    args = [
        "--data",
        one_sample_dataset,
        "--out",
        str(tmp_path / "dp"),
        "--steps",
        str(steps),
        "--batch-size",
        str(bs),
        "--grad-accum",
        "1",
        "--num-workers",
        "0",
        "--log-interval",
        "1",
    ]
    _torchrun([*args, "--stop-at", "3"])
    assert checkpoint.load(tmp_path / "dp" / checkpoint.CHECKPOINT_FILE)["step"] == 3
    _torchrun(args)
    _compare(tmp_path / "ref", tmp_path / "dp", ref_records)
    cfg = preset("tiny")
    same = dataclasses.replace(cfg, steps=steps, log_interval=1, data=dataclasses.replace(cfg.data, batch_size=bs))
    with pytest.raises(ValueError, match="written by 2 rank"):  # one process may not resume 2 ranks' data split
        train(same, one_sample_dataset, str(tmp_path / "dp"), device="cpu", progress=False)
