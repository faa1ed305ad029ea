"""Trainer test fixtures: one small real dataset per session (2 demo conversations through the real pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> str:
    """A dataset of 2 synthetic (espeak) conversations, 2 shards: about 8 samples of 150 micro-turns."""
    from pipeline.job import run
    from synth.demo import make_demo_bundles

    root: Path = tmp_path_factory.mktemp("trainer-demo")
    make_demo_bundles(root / "bundles", count=2)
    out = root / "dataset"
    run(["--input", str(root / "bundles"), "--output", str(out), "--num_shards", "2"])
    return str(out)


@pytest.fixture(scope="session")
def one_sample_dataset(demo_dataset, tmp_path_factory) -> str:
    """A dataset of the first sample of the demo dataset seen from its first perspective (150 micro-turns, one
    shard): the overfitting target. (Format 3 stores both perspectives in one window; the second is left out so that
    the target stays one example.)"""
    import dataclasses
    import json

    import webdataset as wds

    from schemas.reader import shard_urls
    from schemas.sample import WindowSample

    out = tmp_path_factory.mktemp("one-sample")
    source = wds.DataPipeline(wds.SimpleShardList(shard_urls(demo_dataset)[:1]), wds.tarfile_to_samples())
    raw = next(iter(source))
    window = WindowSample.from_members({k: v for k, v in raw.items() if not k.startswith("__")})
    first = dataclasses.replace(
        window,
        meta=dataclasses.replace(window.meta, perspectives=window.meta.perspectives[:1]),
        labels=window.labels[:1],
        floor=window.floor[:1],
        targets=None if window.targets is None else window.targets[:1],
        events=None if window.events is None else window.events[:1],
    )
    with wds.TarWriter(str(out / "shard-00000.tar")) as writer:
        writer.write({"__key__": raw["__key__"], **first.to_members()})
    (out / "manifest.json").write_text(json.dumps({"shards": [{"name": "shard-00000.tar"}]}))
    return str(out)
