"""Loader: deterministic order from (seed, epoch, position), exact mid-epoch resume across workers, static shapes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from schemas.reader import iter_samples
from trainer.config import DataConfig
from trainer.data import Loader, logmel_frames, sample_spans

CFG = DataConfig(context_microturns=4, batch_size=3, num_workers=0, shuffle_buffer=16, frame_patches=2, text_slots=8)


def fingerprint(batch: dict[str, torch.Tensor]) -> bytes:
    return b"".join(batch[k].numpy().tobytes() for k in sorted(batch))


def take(loader: Loader, n: int) -> list[bytes]:
    return [fingerprint(next(loader)) for _ in range(n)]


def epoch_batches(demo_dataset: str, cfg: DataConfig) -> int:
    spans = sum(len(sample_spans(s, cfg.context_microturns)) for s in iter_samples(demo_dataset))
    return spans, -(-spans // cfg.batch_size)


def test_batch_shapes_are_static(demo_dataset):
    batch = next(Loader(demo_dataset, CFG))
    n = CFG.context_microturns * CFG.layout.slots_per_microturn
    assert batch["kind"].shape == (3, n) and batch["dmel"].shape == (3, n, 80)
    assert batch["logmel"].shape == (3, CFG.context_microturns * 16, 80)  # the OUT_DMEL slots' frames only
    assert batch["patches"].shape == (3, CFG.context_microturns * 2, 3, 40, 40)
    assert batch["target_dmel"].any() and batch["target_text"].any()


def test_one_epoch_covers_every_example_once(demo_dataset):
    spans, batches = epoch_batches(demo_dataset, CFG)
    loader = Loader(demo_dataset, CFG, epochs=1)
    got = list(loader)
    assert len(got) == batches
    real = sum(int(b["attendable"].any(dim=1).sum()) for b in got)
    assert real == spans  # only the last batch is padded, with fully masked examples


def test_order_depends_only_on_seed_and_epoch(demo_dataset):
    _, per_epoch = epoch_batches(demo_dataset, CFG)
    a = take(Loader(demo_dataset, CFG, seed=3), 2 * per_epoch)
    b = take(Loader(demo_dataset, CFG, seed=3), 2 * per_epoch)
    c = take(Loader(demo_dataset, CFG, seed=4), per_epoch)
    assert a == b
    assert a[:per_epoch] != c  # another seed, another order
    assert a[:per_epoch] != a[per_epoch:]  # another epoch, another order


@pytest.mark.parametrize("workers", [0, 2, 3])  # 3 workers > 2 shards: split by sample, not by shard
def test_mid_epoch_resume_is_exact(demo_dataset, workers):
    cfg = dataclasses.replace(CFG, num_workers=workers)
    _, per_epoch = epoch_batches(demo_dataset, cfg)
    total, k = per_epoch + 5, per_epoch // 2 + 1  # stop mid-epoch, continue into the next epoch
    straight = take(Loader(demo_dataset, cfg, seed=7), total)
    first = Loader(demo_dataset, cfg, seed=7)
    head = take(first, k)
    state = first.state_dict()
    resumed = Loader(demo_dataset, cfg, seed=7)
    resumed.load_state_dict(state)
    assert head + take(resumed, total - k) == straight


def test_workers_give_the_same_examples_as_one_process(demo_dataset):
    """Worker count changes the interleaving, never the set of examples in an epoch."""
    sets = []
    for workers in (0, 2, 3):
        cfg = dataclasses.replace(CFG, num_workers=workers, shuffle_buffer=1)
        examples = set()
        for b in Loader(demo_dataset, cfg, epochs=1, shuffle=False):
            for i in range(b["kind"].shape[0]):
                if b["attendable"][i].any():
                    examples.add(b["dmel"][i].numpy().tobytes() + b["text"][i].numpy().tobytes())
        sets.append(examples)
    assert sets[0] == sets[1] == sets[2] and len(sets[0]) > 10


def test_resume_with_other_worker_count_fails_early(demo_dataset):
    state = Loader(demo_dataset, CFG).state_dict()
    other = Loader(demo_dataset, dataclasses.replace(CFG, num_workers=2))
    with pytest.raises(ValueError, match="num_workers"):
        other.load_state_dict(state)


def test_logmel_from_raw_audio_quantises_to_pipeline_dmel():
    """The loader's continuous log-mel is the codec's analysis: quantised, it gives the pipeline's codes exactly."""
    from schemas.dmel import LEVELS, dmel_codes

    t = np.arange(3 * 3200) / 16_000
    rng = np.random.default_rng(0)
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    mel = logmel_frames(pcm, 3).reshape(-1, 80)
    assert mel.dtype == np.float32 and mel.min() >= -7.0 and mel.max() <= 2.0
    codes = np.abs(mel[..., None] - LEVELS).argmin(-1)
    np.testing.assert_array_equal(codes, dmel_codes(pcm))
    # a longer stream is cut to the window, a shorter one zero-padded to it
    np.testing.assert_array_equal(logmel_frames(np.concatenate([pcm, pcm]), 3).reshape(-1, 80), mel)
    assert logmel_frames(pcm[:100], 2).shape == (2, 16, 80)


def test_video_frames_reach_the_patch_slots(tmp_path) -> None:
    """A real camera clip through the pipeline: its frames become valid PATCH slots in the packed layout."""
    import json
    from pathlib import Path

    from pipeline.job import run
    from trainer.data import sample_examples

    clip = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "videos" / "asl_gestures" / "help.mkv"
    if not clip.exists():
        pytest.skip("shared fixtures not present")
    (tmp_path / "in" / "help").mkdir(parents=True)
    (tmp_path / "in" / "help" / "bundle.json").write_text(json.dumps({"id": "help", "video": str(clip), "words": []}))
    run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--allow_outside_paths"])
    (sample,) = list(iter_samples(str(tmp_path / "out")))
    packed = list(sample_examples(sample, DataConfig(context_microturns=5)))
    assert len(packed) == 2  # 10 micro-turns of video
    valid = np.concatenate([p.patch_valid for p in packed])
    assert valid.all() and all(p.patches.any() for p in packed)


def test_loader_honours_user_text(tmp_path) -> None:
    """With user_text "none" the batches carry no byte in IN_TEXT slots, the same OUT_TEXT as with "heard"."""
    from schemas.layout import IN_TEXT, OUT_TEXT

    from .synthetic import write_dataset

    write_dataset(tmp_path, seed=3, samples=2, window=8, shards=1)
    heard = next(Loader(str(tmp_path), dataclasses.replace(CFG, frame_patches=0), shuffle=False))
    none = next(Loader(str(tmp_path), dataclasses.replace(CFG, frame_patches=0, user_text="none"), shuffle=False))
    assert (heard["text"][heard["kind"] == IN_TEXT] < 256).any()
    assert not (none["text"][none["kind"] == IN_TEXT] < 256).any()
    assert torch.equal(heard["text"][heard["kind"] == OUT_TEXT], none["text"][none["kind"] == OUT_TEXT])


def test_loader_batches_equal_pack_and_collate(tmp_path) -> None:
    """The loader's in-place packing (collate_spans) gives the model exactly the tensors of the reference path,
    `pack` each example + `collate` (padding with `empty_example`), on a generated sample with video frames, an
    others stream, events of both sides and words; key order, dtypes, shapes and values."""
    from schemas.layout import LayoutSpec
    from tests.schemas.test_layout_batch import make_sample
    from trainer.data import collate, collate_spans, empty_example, sample_examples, sample_spans_prepared

    cfg = DataConfig(context_microturns=3, batch_size=5, frame_patches=6, text_slots=8, event_slots=5)
    assert cfg.layout == LayoutSpec(frame_patches=6, text_slots=8, event_slots=5)
    sample = make_sample(seed=1)
    old = list(sample_examples(sample, cfg))
    new = list(sample_spans_prepared(sample, cfg))
    assert len(old) == len(new) == 3
    pad = empty_example(cfg.layout, cfg.context_microturns)
    for examples, spans in ((old, new), (old[1:], new[1:]), ([], [])):
        want = collate(examples + [pad] * (cfg.batch_size - len(examples)))
        got = collate_spans(spans, cfg, size=cfg.batch_size)
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
            assert torch.equal(got[name], want[name]), name
    assert got["patches"].stride() == want["patches"].stride() == (0,) * 5  # no frame: no memory, as before
    full = collate_spans(new, cfg, size=cfg.batch_size)
    assert full["patch_valid"].any() and full["has_others"].any() and full["event"].any()


def test_loader_batches_equal_the_reference_path_on_a_dataset(demo_dataset) -> None:
    """Loader batches (file order) equal `pack` + `collate` of the same examples read with schemas.reader."""
    from trainer.data import collate, empty_example, sample_examples

    cfg = dataclasses.replace(CFG, shuffle_buffer=1)
    examples = [ex for s in iter_samples(demo_dataset) for ex in sample_examples(s, cfg)]
    pad = empty_example(cfg.layout, cfg.context_microturns)
    bs = cfg.batch_size
    got = list(Loader(demo_dataset, cfg, epochs=1, shuffle=False))
    assert len(got) == -(-len(examples) // bs)
    for i, batch in enumerate(got):
        chunk = examples[i * bs : (i + 1) * bs]
        want = collate(chunk + [pad] * (bs - len(chunk)))
        assert list(batch) == list(want)
        for name in want:
            assert batch[name].dtype == want[name].dtype and torch.equal(batch[name], want[name]), (i, name)


def test_flow_targets_are_the_full_logmel_at_target_slots() -> None:
    """The model's flow target from the compact batch["logmel"] (OUT_DMEL rows only) is, value for value and in
    order, what it read from the whole (B, N, 80) `pack` logmel before: logmel[:, 1:][target_dmel[:, 1:]]."""
    from tests.schemas.test_layout_batch import make_sample
    from trainer.data import collate, collate_spans, sample_examples, sample_spans_prepared
    from trainer.model import flow_targets

    cfg = DataConfig(context_microturns=3, batch_size=4, frame_patches=6, text_slots=8, event_slots=5)
    sample = make_sample(seed=2)  # 8 real micro-turns of 10
    sample["output.flac"] = np.random.default_rng(0).normal(0, 0.1, 10 * 3200).astype(np.float32)
    examples = list(sample_examples(sample, cfg))  # the last span holds a padding micro-turn
    full = torch.from_numpy(np.stack([e.logmel for e in examples]))
    target = torch.from_numpy(np.stack([e.target_dmel for e in examples]))
    before = full[:, 1:][target[:, 1:]]
    assert len(examples) == 3 and len(before) == 8 * 16
    for batch in (collate(examples), collate_spans(list(sample_spans_prepared(sample, cfg)), cfg)):
        assert torch.equal(flow_targets(batch), before)
