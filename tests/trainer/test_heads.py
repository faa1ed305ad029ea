"""trainer/heads.py: each head returns a sum of per-target losses (nats for text and dMel, squared error for flow).

.venv/bin/python -m pytest -q tests/trainer/test_heads.py
"""

from __future__ import annotations

import math

import pytest
import torch

from trainer.heads import TEXT_CLASSES, DmelHead, FlowHead, TextHead, time_embedding


def zeroed(head: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
    return head


def test_text_head_sums_cross_entropy_over_targets() -> None:
    assert TEXT_CLASSES == 257  # bytes and TEXT_END
    head = zeroed(TextHead(8))  # uniform over 257 classes: log(257) nats per target
    h = torch.randn(5, 8)
    loss = head(h, torch.tensor([0, 1, 255, 256, 7]))
    assert loss.item() == pytest.approx(5 * math.log(257), rel=1e-6)
    with torch.no_grad():
        head.proj.bias[65] = 50.0  # all but certain of byte 'A'
    assert head(h, torch.full((5,), 65)).item() == pytest.approx(0.0, abs=1e-6)
    assert head(h[:1], torch.tensor([66])).item() == pytest.approx(50.0, abs=1e-3)


def test_dmel_head_is_the_mean_over_channels_summed_over_frames() -> None:
    head = zeroed(DmelHead(8))  # uniform over 16 levels in each of 80 channels: log(16) per frame
    codes = torch.randint(0, 16, (3, 80))
    assert head(torch.randn(3, 8), codes).item() == pytest.approx(3 * math.log(16), rel=1e-6)
    with torch.no_grad():
        head.proj.bias.view(80, 16)[:, 4] = 40.0  # every channel sure of level 4
    sure = head(torch.randn(2, 8), torch.full((2, 80), 4))
    assert sure.item() == pytest.approx(0.0, abs=1e-6)
    half = torch.full((1, 80), 4)
    half[0, :40] = 5  # half the channels wrong by a margin of 40 nats: 20 nats for the frame
    assert head(torch.randn(1, 8), half).item() == pytest.approx(20.0, abs=1e-3)


def test_time_embedding_is_sin_then_cos() -> None:
    e = time_embedding(torch.tensor([[0.0], [0.5]]), 6)
    assert e.shape == (2, 6)
    torch.testing.assert_close(e[0], torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    freqs = torch.exp(-math.log(1000.0) * torch.arange(3) / 3)
    torch.testing.assert_close(e[1, :3], torch.sin(500.0 * freqs))


def test_flow_head_is_the_velocity_error_of_its_own_draws() -> None:
    """With a zero velocity the loss is sum over frames of mean((x1 - x0)^2), x0 and t drawn from the generator."""
    torch.manual_seed(0)
    head = FlowHead(16)
    zeroed(head.mlp[-1])
    x1 = torch.randn(4, 80)
    loss = head(torch.randn(4, 16), x1, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 80, generator=g)
    torch.rand(4, 1, generator=g)  # the times: unused by a zero velocity
    torch.testing.assert_close(loss, (x1 - x0).square().mean(-1).sum())


def test_flow_head_draws_are_reproducible_and_train() -> None:
    torch.manual_seed(0)
    head = FlowHead(16)
    h, x1 = torch.randn(4, 16), torch.randn(4, 80)
    a = head(h, x1, torch.Generator().manual_seed(1))
    assert torch.equal(a, head(h, x1, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, head(h, x1, torch.Generator().manual_seed(2)))
    a.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
