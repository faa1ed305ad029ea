"""The `small` preset builds and trains a step on CPU (its model; a short context keeps the batch tiny)."""

from __future__ import annotations

import dataclasses

import torch

from trainer.config import preset
from trainer.data import Loader
from trainer.model import Model, parameter_counts
from trainer.train import flow_generator

from .synthetic import write_dataset

SMALL_COUNTS = {
    "total": 113_137_169,
    "experts": 100_663_296,
    "embedding": 1_446_400,
    "active": 37_639_697,
    "active_non_embedding": 36_193_297,
}
"""Parameter counts of the small preset (D 512, 8 layers, 8 experts of F 1024, top-2): 113.1M in all, 37.6M active
per token (36.2M without the lookup tables)."""


def test_small_preset_counts_and_one_training_step(tmp_path):
    cfg = preset("small")
    m = cfg.model
    torch.manual_seed(0)
    model = Model(cfg)
    counts = parameter_counts(model)
    assert counts == SMALL_COUNTS
    assert counts["experts"] == m.layers * m.experts * 3 * m.dim * m.ffn_dim
    # the small model over 2 examples of 2 micro-turns (the preset's 8 x 32 is a GPU batch)
    data = dataclasses.replace(cfg.data, context_microturns=2, batch_size=2, num_workers=0)
    write_dataset(tmp_path / "data", seed=1, samples=2, window=8, shards=1)
    batch = next(Loader(str(tmp_path / "data"), data))
    out = model(batch, flow_generator(0, 0, 0))
    assert out["n_text"] > 0 and out["n_dmel"] > 0
    loss = (
        out["text"] / out["n_text"]
        + out["dmel"] / out["n_dmel"]
        + out["flow"] / out["n_dmel"]
        + cfg.loss.aux_weight * out["aux"]
        + cfg.loss.z_weight * out["z"]
    )
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters()}
    unused = {n for n, g in grads.items() if g is None}
    assert all(n.startswith(("stem.", "others_emb")) for n in unused), unused  # no video, no others stream here
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    for block in model.blocks:  # every expert of every layer got a gradient (top-2 of 8 over ~200 tokens)
        assert (block.moe.w1_EFD.grad.flatten(1).abs().sum(1) > 0).all()
    assert out["load"].shape == (m.layers, m.experts)


def test_user_text_flag() -> None:
    """`microturn train --user_text none` reaches the layout; left out, the preset's `heard` stays."""
    from cli.train import config_from_args
    from cli.train import train_parser as build_parser

    none = config_from_args(build_parser().parse_args(["--data", "d", "--out", "o", "--user_text", "none"]))
    assert none.data.user_text == "none" and none.data.layout.user_text == "none"
    assert config_from_args(build_parser().parse_args(["--data", "d", "--out", "o"])).data.user_text == "heard"
