"""Crafted inputs for the adversarial tests: a small --keep_audio dataset, shards with a member rewritten, checkpoints.

A rewritten member is compressed again as the job compresses it, and the index's byte offsets follow the rewritten
tar, so the crafted dataset is read exactly as a real one would be.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainer import checkpoint
from trainer.config import DataConfig, ModelConfig, TrainConfig
from trainer.model import Model


def keep_audio_dataset(root: Path, *, count: int = 1) -> Path:
    """`count` espeak-ng demo conversations run through the job with --keep_audio into root/dataset."""
    from pipeline.job import run
    from synth.demo import make_demo_bundles

    make_demo_bundles(root / "bundles", count=count, seed=0)
    run(["--input", str(root / "bundles"), "--output", str(root / "dataset"), "--keep_audio"])
    return root / "dataset"


def copy_with_member(dataset: Path, dest: Path, suffix: str, change: Callable[[bytes], bytes]) -> Path:
    """A copy of `dataset` at `dest` whose members ending in `suffix` (or `suffix` + ".zst": changed decompressed,
    then compressed again) are replaced by ``change(old_bytes)``; the index files' byte offsets are moved to where
    each sample now starts, so the crafted dataset is read exactly as a real one would be."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.shard import compress, decompress

    shutil.copytree(dataset, dest)
    for shard in sorted(dest.glob("shard-*.tar")):
        buf = io.BytesIO()
        offsets: dict[str, int] = {}
        with tarfile.open(shard) as src, tarfile.open(fileobj=buf, mode="w", format=src.format) as out:
            for info in src.getmembers():
                data = src.extractfile(info).read()  # type: ignore[union-attr]
                if info.name.endswith(suffix):
                    data = change(data)
                elif info.name.endswith(suffix + ".zst"):
                    data = compress(change(decompress(data)))
                info.size = len(data)
                offsets.setdefault(info.name.partition(".")[0], buf.tell())
                out.addfile(info, io.BytesIO(data))
        shard.write_bytes(buf.getvalue())
        index = dest / "index" / f"{shard.stem}.parquet"
        if index.exists():
            table = pq.read_table(index)
            moved = pa.array(
                [offsets[k] for k in table.column("key").to_pylist()], type=table.schema.field("offset").type
            )
            pq.write_table(table.set_column(table.schema.get_field_index("offset"), "offset", moved), index)
    return dest


def with_meta(dataset: Path, dest: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy whose every meta.json is ``change(meta)`` (a dict changed in place, or anything JSON)."""

    def rewrite(data: bytes) -> bytes:
        meta = json.loads(data)
        out = change(meta)
        return json.dumps(meta if out is None else out, separators=(",", ":")).encode()

    return copy_with_member(dataset, dest, ".meta.json", rewrite)


def tiny_config() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(dim=32, layers=1, heads=2, experts=2, top_k=1, ffn_dim=32, stem_dim=16),
        data=DataConfig(context_microturns=4, frame_patches=0, text_slots=5, batch_size=1, num_workers=0),
        moe_impl="loop",
    )


def tiny_checkpoint(path: Path, cfg: TrainConfig | None = None) -> Path:
    """A checkpoint as `microturn train` writes it (model weights, config, step) of a tiny untrained model."""
    cfg = cfg or tiny_config()
    torch.manual_seed(0)
    model = Model(cfg)
    checkpoint.save(path, {"model": model.state_dict(), "config": cfg.to_dict(), "step": 0})
    return path
