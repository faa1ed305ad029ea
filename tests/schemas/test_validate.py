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
from schemas.shard import compress, encode_array
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
    # format 3 packs two 4-bit codes per byte, so a code outside 0..15 cannot be stored: the corruption that can
    # is a dMel member of the wrong layout (here unpacked codes, one per byte)
    bad = np.zeros((2, 80, 150 * 16), np.uint8)
    _rewrite_member(shard, "dmel.npy.zst", compress(encode_array(bad)))
    report = validate(str(copy))
    text = report.render()
    assert not report.ok
    assert "dmel.npy: dtype uint8 shape (2, 80, 2400), expected uint8 (n, 40, W * 16)" in text
    assert "sha256/size" in text
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


def test_plain_webdataset_with_the_documented_decoder_reads_every_member(demo_dataset: Path) -> None:
    """The README's example: wds.WebDataset(urls).decode(wds_zstd) decodes every member; the dMel rows unpack to
    the codes the reader gives each perspective."""
    import webdataset as wds

    from schemas.reader import decode_samples, shard_urls
    from schemas.shard import unpack_codes, wds_zstd

    urls = shard_urls(str(demo_dataset / "dataset"))
    plain = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode(wds_zstd))
    raw = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(plain) == 9
    for s, r in zip(plain, raw, strict=True):
        assert set(s) == set(r) and not any(isinstance(v, bytes) for k, v in s.items() if not k.startswith("__"))
        assert isinstance(s["meta.json.zst"], dict) and isinstance(s["words.json.zst"], list)
        meta = s["meta.json.zst"]
        codes = unpack_codes(s["dmel.npy.zst"]).reshape(len(meta["speakers"]), 150, 16, 80)
        for view, p in zip(decode_samples(r), meta["perspectives"], strict=True):
            np.testing.assert_array_equal(view["input.dmel.npy"], codes[p["input"]])
            np.testing.assert_array_equal(view["output.dmel.npy"], codes[p["output"]])


def _as_format_2(copy: Path) -> None:
    """Make `copy` look like a format-2 dataset: its manifest's version and one sample's plain v2 members."""
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 2
    (copy / "manifest.json").write_text(json.dumps(manifest))


def test_a_format_2_dataset_is_refused_with_one_line_saying_to_rerun(copy: Path, tmp_path: Path) -> None:
    from schemas.reader import decode_sample
    from schemas.shard import FormatVersionError, encode_json
    from trainer.config import preset
    from trainer.data import Loader

    key = pq.read_table(copy / "index").column("key")[0].as_py()
    _as_format_2(copy)
    for argv in (
        ["validate", str(copy)],
        ["inspect", str(copy), key, "--out", str(tmp_path / "x.png")],
        ["report", str(copy), "--out", str(tmp_path / "r.html")],
        ["split", str(copy), "--out", str(tmp_path / "split.json")],
    ):
        proc = subprocess.run([sys.executable, "-m", "microturn_cli", *argv], capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode in (1, 2) and "format version 2" in out and "re-run `microturn run`" in out, out
        assert "Traceback" not in out, out
    with pytest.raises(FormatVersionError, match="re-run"):
        Loader(str(copy), preset("tiny").data)
    v2_sample = {"__key__": "c_A_00000", "meta.json": encode_json({"format_version": 2}), "mask.npy": b""}
    with pytest.raises(FormatVersionError, match="version 2.*re-run"):
        decode_sample(v2_sample)
