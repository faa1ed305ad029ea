"""The PNG of one sample: exact size, not blank, frames drawn when a frames member exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.tools import cmd_inspect as inspect_main
from pipeline.tools.inspect import load_sample, render_sample
from schemas.reader import iter_samples


@pytest.fixture(scope="module")
def first_key(demo_dataset: Path) -> str:
    return next(iter(iter_samples(str(demo_dataset / "dataset"))))["__key__"]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_inspect_png_has_the_size_asked_for_and_is_not_blank(
    demo_dataset: Path, first_key: str, tmp_path: Path
) -> None:
    out = tmp_path / "sample.png"
    assert (
        inspect_main(
            [str(demo_dataset / "dataset"), first_key, "--out", str(out), "--width_px", "1800", "--height_px", "900"]
        )
        == 0
    )
    img = _pixels(out)
    assert img.shape == (900, 1800, 3)
    assert img.std() > 30  # not one flat colour
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # dMel images give many colours
    grey = img.mean(axis=2)
    assert (grey < 60).mean() > 0.2  # the dMel panels: silence is dark in magma
    assert (grey > 250).mean() > 0.2  # the page and the band/word panels are white
    assert (grey[:20] > 250).mean() > 0.9  # the top margin above the title


def test_inspect_loads_by_index_offset_the_same_sample_as_the_reader(demo_dataset: Path) -> None:
    dataset = str(demo_dataset / "dataset")
    for expected in list(iter_samples(dataset))[:5]:
        got = load_sample(dataset, expected["__key__"], expected["meta.json"]["perspective"])
        assert got["meta.json"] == expected["meta.json"]
        np.testing.assert_array_equal(got["input.dmel.npy"], expected["input.dmel.npy"])


def test_inspect_draws_frames_only_when_present(demo_dataset: Path, first_key: str, tmp_path: Path) -> None:
    sample = load_sample(str(demo_dataset / "dataset"), first_key)
    plain, framed = tmp_path / "plain.png", tmp_path / "framed.png"
    render_sample(sample, str(plain), width_px=1200, height_px=800)
    frames = np.zeros((150, 24, 32, 3), dtype=np.uint8)
    frames[..., 1] = 255  # pure green frames
    render_sample(
        {**sample, "frames": frames, "frame_mask": np.ones(150, dtype=np.uint8)},
        str(framed),
        width_px=1200,
        height_px=800,
    )
    a, b = _pixels(plain), _pixels(framed)
    assert a.shape == b.shape == (800, 1200, 3)
    green = (b[..., 1] > 200) & (b[..., 0] < 60) & (b[..., 2] < 60)
    assert green[:200].sum() > 10_000 and not ((a[..., 1] > 200) & (a[..., 0] < 60) & (a[..., 2] < 60)).any()


def test_inspect_unknown_key(demo_dataset: Path, tmp_path: Path) -> None:
    assert inspect_main([str(demo_dataset / "dataset"), "nope_A_00000", "--out", str(tmp_path / "x.png")]) == 2
