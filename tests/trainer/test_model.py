"""Model pieces: hMLP stem on random patches, the §6 attention mask, causality, and a forward on frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from schemas.layout import LayoutSpec, pack
from trainer.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from trainer.data import collate
from trainer.model import HMLPStem, Model, attention_mask, speak_targets

TINY = TrainConfig(
    model=ModelConfig(dim=32, layers=2, heads=2, experts=3, top_k=2, ffn_dim=32, stem_dim=32),
    data=DataConfig(context_microturns=3, batch_size=2, frame_patches=6, text_slots=4),
)


def test_stem_on_random_patches_keeps_samples_apart():
    torch.manual_seed(0)
    stem = HMLPStem(hidden=32, dim=24)
    patches = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    out = stem(patches)
    assert out.shape == (5, 24) and torch.isfinite(out).all()
    changed = patches.clone()
    changed[0] = 255 - changed[0]
    out2 = stem(changed)
    assert not torch.allclose(out[0], out2[0])
    torch.testing.assert_close(out[1:], out2[1:], rtol=0, atol=0)  # LayerNorm: no statistics across patches
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in stem.modules())


def test_attention_mask_is_causal_over_attendable_slots():
    att = torch.tensor([[True, False, True, True]])
    m = attention_mask(att)[0, 0]
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)


def _sample(seed: int, frames: bool) -> tuple[dict, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    w = 3
    words = [
        {"text": "hey", "stream": "output", "microturn": 1, "start_s": 0.2, "end_s": 0.3},
        {"text": "yo", "stream": "input", "microturn": 0, "start_s": 0.0, "end_s": 0.1},
    ]
    sample = {
        "input.dmel.npy": rng.integers(0, 16, (w, 16, 80), dtype=np.uint8),
        "output.dmel.npy": rng.integers(0, 16, (w, 16, 80), dtype=np.uint8),
        "mask.npy": np.ones(w, np.uint8),
        "words.json": words,
    }
    video = rng.integers(0, 256, (w, 80, 120, 3), dtype=np.uint8) if frames else None
    return sample, video


def _batch(spec: LayoutSpec, frames: bool, mutate=None) -> dict[str, torch.Tensor]:
    examples = []
    for seed in range(2):
        sample, video = _sample(seed, frames)
        if mutate:
            mutate(sample)
        examples.append(pack(sample, spec, first=0, count=3, frames=video))
    return collate(examples)


def test_forward_with_frames_trains_the_stem():
    torch.manual_seed(0)
    model = Model(TINY)
    batch = _batch(TINY.data.layout, frames=True)
    assert batch["patch_valid"].all()
    out = model(batch, torch.Generator().manual_seed(0))
    loss = out["text"] + out["dmel"] + out["flow"] + out["aux"] + out["z"]
    assert torch.isfinite(loss)
    loss.backward()
    assert model.stem.s1.weight.grad is not None and model.stem.s1.weight.grad.abs().sum() > 0
    assert out["n_dmel"] == 2 * 3 * 16 and out["n_text"] == 2 * (1 + 4 + 1)  # END; "hey" + END; END


def test_the_future_does_not_change_the_past():
    """Changing micro-turn 2's model dMel leaves every loss term of micro-turns 0-1 unchanged."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, experts=1, top_k=1))
    model = Model(cfg).eval()
    spec = cfg.data.layout

    def mutate(sample):
        sample["output.dmel.npy"][2] = 15 - sample["output.dmel.npy"][2]

    hidden = {}
    for name, m in (("base", None), ("changed", mutate)):
        batch = _batch(spec, frames=False, mutate=m)
        h: list[torch.Tensor] = []
        hook = model.norm.register_forward_hook(lambda mod, i, o, h=h: h.append(o))
        model(batch, torch.Generator().manual_seed(0))
        hook.remove()
        hidden[name] = h[0]
    per = spec.slots_per_microturn
    first_changed = 2 * per + per - 16  # the first model dMel slot of micro-turn 2
    base, changed = hidden["base"], hidden["changed"]
    torch.testing.assert_close(base[:, :first_changed], changed[:, :first_changed], rtol=0, atol=0)
    assert not torch.equal(base[:, first_changed], changed[:, first_changed])


def test_speak_targets_read_the_model_frames_of_real_microturns():
    spec = TINY.data.layout

    def plant(sample):
        sample["output.dmel.npy"][:] = 1  # digital silence everywhere ...
        sample["output.dmel.npy"][1, 7] = 9  # ... but one loud frame in micro-turn 1
        sample["input.dmel.npy"][:] = 15  # loud user frames are not the model speaking
        sample["mask.npy"][2] = 0  # micro-turn 2 is padding: no decision

    batch = _batch(spec, frames=False, mutate=plant)
    at_speak, speaks, may_change = speak_targets(batch)
    assert at_speak.sum(1).tolist() == [2, 2]
    assert speaks.tolist() == [False, True, False, True]
    assert may_change.tolist() == [False] * 4  # the user speaks throughout while the model was silent before
    _, ahead, _ = speak_targets(batch, horizon=1)  # speaks in k or k + 1
    assert ahead.tolist() == [True, True, True, True]

    def quiet_user(sample):
        plant(sample)
        sample["input.dmel.npy"][:] = 1
        sample["input.dmel.npy"][1] = 12  # the user speaks in micro-turn 1 only

    _, _, may_change = speak_targets(_batch(spec, frames=False, mutate=quiet_user))
    # micro-turn 0: model silent before (none), user silent -> may start; 1: model silent before, user speaks -> no
    assert may_change.tolist() == [True, False, True, False]


def test_speak_head_is_trained_and_absent_by_default():
    torch.manual_seed(0)
    plain = Model(TINY)
    assert plain.speak_head is None
    out = plain(_batch(TINY.data.layout, frames=False), torch.Generator().manual_seed(0))
    assert float(out["speak"]) == 0.0 and out["n_speak"] == 0
    torch.manual_seed(0)
    model = Model(dataclasses.replace(TINY, loss=LossConfig(speak_weight=1.0)))
    shared = plain.state_dict()
    for key, value in model.state_dict().items():  # the head is made last: every other weight is drawn as before
        if not key.startswith("speak_head."):
            torch.testing.assert_close(value, shared[key], rtol=0, atol=0)
    out = model(_batch(TINY.data.layout, frames=False), torch.Generator().manual_seed(0))
    assert out["n_speak"] == 2 * 3 and float(out["speak"]) > 0
    out["speak"].backward()
    assert model.speak_head.proj.weight.grad.abs().sum() > 0
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the decision trains the trunk too
