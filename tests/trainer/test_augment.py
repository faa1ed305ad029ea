"""Training-time variation of the heard dMel: shift, gain and tilt move what they say, silence stays silence, the
model's own stream is never touched, and the draws repeat."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from schemas.dmel import SILENCE_CODE
from schemas.layout import IN_DMEL, OUT_DMEL
from trainer.augment import augment_heard, vary_codes
from trainer.config import DataConfig, preset
from trainer.data import Loader
from trainer.train import augment_generator


def _codes(*rows: list[int]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.uint8)  # (1, M, C)


def test_a_channel_shift_moves_the_spectrum_and_fills_from_the_edge():
    codes = torch.full((1, 2, 80), SILENCE_CODE, dtype=torch.uint8)
    codes[0, :, 40] = 12
    codes[0, :, 0] = 7
    up = vary_codes(codes, torch.tensor([3]), torch.tensor([0]), torch.tensor([0.0]))
    assert up.dtype == torch.uint8
    assert (up[0, :, 43] == 12).all() and (up[0, :, 40] == SILENCE_CODE).all()
    assert (up[0, :, :4] == 7).all()  # channels 0..3 all read channel 0
    down = vary_codes(codes, torch.tensor([-5]), torch.tensor([0]), torch.tensor([0.0]))
    assert (down[0, :, 35] == 12).all() and (down[0, :, 75:] == SILENCE_CODE).all()


def test_gain_moves_loud_codes_only_and_stays_in_range():
    codes = _codes([SILENCE_CODE, 2, 8, 15] * 20)
    louder = vary_codes(codes, torch.tensor([0]), torch.tensor([2]), torch.tensor([0.0]))
    assert louder[0, 0, :4].tolist() == [SILENCE_CODE, 4, 10, 15]
    softer = vary_codes(codes, torch.tensor([0]), torch.tensor([-2]), torch.tensor([0.0]))
    assert softer[0, 0, :4].tolist() == [SILENCE_CODE, SILENCE_CODE, 6, 13]


def test_tilt_raises_the_top_against_the_bottom():
    codes = torch.full((1, 1, 80), 8, dtype=torch.uint8)
    tilted = vary_codes(codes, torch.tensor([0]), torch.tensor([0]), torch.tensor([4.0]))[0, 0]
    assert tilted[0] == 6 and tilted[-1] == 10 and tilted[40] == 8
    assert (tilted[1:] >= tilted[:-1]).all()


def test_each_example_gets_its_own_draw():
    codes = torch.full((2, 1, 80), 8, dtype=torch.uint8)
    out = vary_codes(codes, torch.tensor([0, 0]), torch.tensor([1, -1]), torch.tensor([0.0, 0.0]))
    assert (out[0] == 9).all() and (out[1] == 7).all()


@pytest.fixture(scope="module")
def batch(demo_dataset) -> dict:
    cfg = dataclasses.replace(preset("tiny").data, frame_patches=0, batch_size=4, context_microturns=4)
    for b in Loader(demo_dataset, cfg, epochs=1, shuffle=False):  # the first whose user speaks
        if (b["dmel"][:, b["kind"][0] == IN_DMEL] > SILENCE_CODE).any():
            return b
    raise AssertionError("no batch of the demo dataset has user speech")


def test_only_the_heard_slots_change_and_the_draws_repeat(batch):
    cfg = DataConfig(frame_patches=0, augment_channels=3, augment_levels=1, augment_tilt=2)
    kind = batch["kind"][0]
    a = augment_heard(batch, cfg, augment_generator(0, 5, 0))
    assert torch.equal(a["dmel"][:, kind == OUT_DMEL], batch["dmel"][:, kind == OUT_DMEL])
    assert not torch.equal(a["dmel"][:, kind == IN_DMEL], batch["dmel"][:, kind == IN_DMEL])
    assert torch.equal(a["dmel"][:, kind != IN_DMEL], batch["dmel"][:, kind != IN_DMEL])
    silent = batch["dmel"] == SILENCE_CODE
    assert silent.any() and (a["dmel"][silent] == SILENCE_CODE).all()  # whole-silence frames: same codes anywhere
    assert a["kind"] is batch["kind"] and a["logmel"] is batch["logmel"]
    again = augment_heard(batch, cfg, augment_generator(0, 5, 0))
    assert torch.equal(again["dmel"], a["dmel"])
    other = augment_heard(batch, cfg, augment_generator(0, 6, 0))
    assert not torch.equal(other["dmel"], a["dmel"])


def test_without_augmentation_the_batch_is_the_same_object(batch):
    assert augment_heard(batch, DataConfig(frame_patches=0), augment_generator(0, 0, 0)) is batch


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError, match="augment_levels must be >= 0"):
        DataConfig(augment_levels=-1)


def test_microturn_train_takes_the_bounds():
    from cli.train import config_from_args, train_parser

    args = train_parser().parse_args(["--data", "d", "--out", "o", "--augment_channels", "3", "--augment_tilt", "2"])
    data = config_from_args(args).data
    assert (data.augment_channels, data.augment_levels, data.augment_tilt) == (3, 0, 2)
    assert "augment_levels" in train_parser().format_help()
