"""Issue 23.11, checkpoints: a truncated checkpoint, one whose weights come from another config, one with a newer
config key or an unknown weight, one without `config` -> one line naming the file and what is wrong (exit 2, no
traceback) in `respond`, `eval`, `eval behaviour` and `train` resuming (trainer.checkpoint.CheckpointError).

    PYTHONPATH=. python -m pytest -q tests/trainer/test_adversarial_checkpoints.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from microturn_cli import main
from tests.crafted import keep_audio_dataset
from trainer import checkpoint
from trainer.config import ModelConfig, preset
from trainer.model import Model

CASES = {
    "truncated": "not a readable checkpoint",
    "other_config": "weights do not fit",
    "newer_key": "newer or malformed",
    "unknown_weight": "weights do not fit",
    "no_config": "has no 'config'",
    "not_a_dict": "not a checkpoint",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keep_audio_dataset(tmp_path_factory.mktemp("adv-ckpt"))


def craft(case: str, path: Path) -> Path:
    cfg = preset("tiny")
    torch.manual_seed(0)
    weights = Model(cfg).state_dict()
    state = {"model": weights, "config": cfg.to_dict(), "step": 1}
    if case == "other_config":
        other = dataclasses.replace(cfg, model=ModelConfig(dim=32, layers=1, heads=2, experts=2, top_k=1, ffn_dim=32))
        state["model"] = Model(other).state_dict()
    elif case == "newer_key":
        state["config"]["model"]["rope_scaling"] = 2.0
    elif case == "unknown_weight":
        state["model"] = {**weights, "future_head.weight": torch.zeros(3)}
    elif case == "no_config":
        del state["config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, [1, 2] if case == "not_a_dict" else state)
    if case == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_checkpoint_error_names_file_and_problem(case: str, tmp_path: Path) -> None:
    path = craft(case, tmp_path / "checkpoint.pt")
    with pytest.raises(checkpoint.CheckpointError, match=CASES[case]) as e:
        checkpoint.load_model(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["respond", "eval", "eval behaviour", "train"])
def test_commands_say_one_line(
    command: str, case: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    path = craft(case, run / "checkpoint.pt")
    argv = {
        "respond": ["respond", "--checkpoint", str(path), "--input", str(dataset), "--out", str(tmp_path / "o")],
        "eval": ["eval", "--checkpoint", str(path), "--data", str(dataset)],
        "eval behaviour": ["eval", "behaviour", "--checkpoint", str(path), "--data", str(dataset)],
        "train": ["train", "--data", str(dataset), "--out", str(run), "--config", "tiny", "--no_progress"],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and str(path) in lines[0], err
    if command != "train":  # train refuses a checkpoint without its optimiser state first
        assert CASES[case] in lines[0], err
