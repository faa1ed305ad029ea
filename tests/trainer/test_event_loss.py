"""The trainer learns the model's timed events: on a one-sample dataset whose output side delegates a task, the
text loss on the event tokens falls in the tiny overfit run (and the input side's arrivals are never targets)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from schemas.layout import IN_TEXT, OUT_TEXT
from schemas.shard import FIXED_MTIME, compress, encode_json
from trainer import checkpoint
from trainer.config import preset
from trainer.data import Loader
from trainer.model import Model
from trainer.train import train

from .synthetic import make_sample

WINDOW = 24
STEPS = 40
FACTOR = 2.0
"""The event-token cross-entropy starts near ln(257) = 5.5 nats; memorising one sample's 3 events divides it by far
more than 2 within 40 steps; a trainer without loss on event tokens leaves it near where it started."""


def _events() -> list[dict]:
    def ev(kind, side, k, name, **kw):
        out = {"kind": kind, "side": side, "microturn": k, "time_s": round(0.2 * k + 0.07, 6), "name": name}
        out.update(arguments=None, content=None, task=None, topic=None, status=None, target=side == "output")
        return {**out, **kw}

    return [
        ev("task_start", "output", 2, "task_start", arguments={"name": "convert 20 EUR"}, task="convert 20 EUR"),
        ev("worker_delivery", "input", 9, "convert 20 EUR", content="21.60 USD", topic="final", status="done"),
        ev("task_resolve", "output", 14, "task_resolve", arguments={"action": "cancel", "task": "timer"}, task="timer"),
    ]


def _dataset(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    members = make_sample(np.random.default_rng(3), WINDOW, "events_00000")
    members["events.json.zst"] = compress(encode_json([_events()]))  # format 3: one event list per perspective
    with wds.TarWriter(str(directory / "shard-00000.tar"), encoder=False, mtime=FIXED_MTIME) as writer:
        writer.write({"__key__": "events_00000", **members})
    (directory / "manifest.json").write_text(json.dumps({"shards": [{"name": "shard-00000.tar"}]}), encoding="utf-8")
    return str(directory)


def _event_ce(model: Model, data: str, cfg) -> tuple[float, int, int]:
    """Mean text cross-entropy over the output event tokens; counts of output and input event slots that are
    targets."""
    total, count, in_targets = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for batch in Loader(data, cfg.data, epochs=1, shuffle=False):
            is_out_event = batch["event"] & (batch["kind"] == OUT_TEXT)
            in_targets += int((batch["target_text"] & batch["event"] & (batch["kind"] == IN_TEXT)).sum())
            only = dict(batch, target_text=batch["target_text"] & is_out_event)
            out = model(only)
            total, count = total + float(out["text"]), count + out["n_text"]
    return total / max(count, 1), count, in_targets


def test_loss_falls_on_output_event_tokens(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    cfg = dataclasses.replace(preset("tiny"), steps=STEPS, log_interval=10)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, frame_patches=0))
    torch.manual_seed(cfg.seed)
    before, n_events, in_targets = _event_ce(Model(cfg), data, cfg)
    assert n_events > 20 and in_targets == 0  # the events reach the output text channel; arrivals are no target
    train(cfg, data, str(tmp_path / "run"), device="cpu", progress=False)
    model = Model(cfg)
    model.load_state_dict(checkpoint.load(tmp_path / "run" / checkpoint.CHECKPOINT_FILE)["model"])
    after, _, _ = _event_ce(model, data, cfg)
    assert before / after >= FACTOR, (before, after)
