"""validate() passes a good dataset and names what is wrong in a damaged one; the reader decodes every member."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas.reader import dataset, iter_samples
from schemas.shard import encode_array
from schemas.validate import validate


@pytest.fixture
def copy(demo_dataset: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(demo_dataset / "dataset", out)
    return out


def test_good_dataset_passes_and_cli_exits_zero(demo_dataset: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "microturn_cli", "validate", str(demo_dataset / "dataset")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("OK: 18 samples checked")


def test_reader_returns_numpy_or_torch_with_explicit_decoders(demo_dataset: Path) -> None:
    samples = list(iter_samples(str(demo_dataset / "dataset")))
    index = pq.read_table(demo_dataset / "dataset" / "index").to_pylist()  # the index/ directory as one table
    assert sorted(s["__key__"] for s in samples) == sorted(r["key"] for r in index)
    s = samples[0]
    assert s["input.dmel.npy"].dtype == np.uint8 and s["input.dmel.npy"].shape == (150, 16, 80)
    assert isinstance(s["meta.json"], dict) and isinstance(s["words.json"], list)
    t = next(iter(dataset(str(demo_dataset / "dataset"), as_torch=True)))
    import torch

    assert isinstance(t["output.dmel.npy"], torch.Tensor) and t["output.dmel.npy"].dtype == torch.uint8


def _rewrite_member(shard: Path, member_suffix: str, data: bytes) -> None:
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    done = False
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, payload in members:
            if not done and m.name.endswith(member_suffix):
                payload, done = data, True
                m.size = len(data)
            import io

            tar.addfile(m, io.BytesIO(payload))


def test_a_flipped_code_and_a_bad_sha_are_reported(copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    shard = copy / manifest["shards"][0]["name"]
    bad = np.zeros((150, 16, 80), np.uint8)
    bad[3, 2, 1] = 16  # outside 0..15
    _rewrite_member(shard, "input.dmel.npy", encode_array(bad))
    report = validate(str(copy))
    text = report.render()
    assert not report.ok
    assert "code 16 outside 0..15" in text and "sha256/size" in text
    proc = subprocess.run(
        [sys.executable, "-m", "microturn_cli", "validate", str(copy)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "FAILED" in proc.stdout


def test_index_and_counts_must_agree_with_the_shards(copy: Path) -> None:
    first = sorted((copy / "index").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(first).slice(1), first)  # drop a row
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["counts"]["inputs"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    text = validate(str(copy)).render()
    assert "but not in index" in text
    assert f"index/{first.name}: rows are not" in text
    assert "inputs 6 != conversations_written 5 + rejected 0" in text
