"""The HTML report: self-contained, and holding the figures this test computes on its own from the dataset."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import jensenshannon

from cli.tools import cmd_report as report_main
from schemas.reader import iter_samples

from ...evals.test_fdbench_export import keep_audio_subset


@pytest.fixture(scope="module")
def small_dataset(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three of the demo conversations and one broken bundle (rejected): a second, different dataset."""
    return keep_audio_subset(demo_dataset, tmp_path_factory)


def _metrics(page: str) -> dict[tuple[str, int], str]:
    return {
        (m, int(side)): v
        for m, side, v in re.findall(r'data-metric="([^"]+)" data-side="(\d)" data-value="([^"]*)"', page)
    }


def _bars(page: str, dist: str) -> dict[tuple[int, int], float]:
    svg = re.search(rf'<svg[^>]*data-dist="{dist}".*?</svg>', page, re.S).group(0)
    return {
        (int(s), int(b)): float(v)
        for s, b, v in re.findall(r'data-series="(\d)" data-bin="(-?\d+)" data-value="([^"]+)"', svg)
    }


def _independent_figures(dataset: Path) -> dict:
    """Hours, conversations, samples, perspectives read from the samples themselves (not from the manifest)."""
    conv_samples, perspectives, samples = {}, set(), 0
    for s in iter_samples(str(dataset)):
        meta = s["meta.json"]
        conv_samples[meta["conversation_id"]] = meta["conversation_samples"]
        perspectives.add((meta["conversation_id"], meta["perspective"]))
        samples += 1
    return {
        "hours": sum(conv_samples.values()) / 16000 / 3600,
        "conversations": len(conv_samples),
        "samples": samples,
        "perspectives": len(perspectives),
    }


def _assert_self_contained(page: str) -> None:
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r"(src|href)\s*=|url\(|@import", page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}  # namespace only


def test_report_holds_the_figures_of_the_dataset(demo_dataset: Path, tmp_path: Path) -> None:
    dataset = demo_dataset / "dataset"
    out = tmp_path / "report.html"
    assert report_main([str(dataset), "--out", str(out)]) == 0
    page = out.read_text()
    _assert_self_contained(page)
    m = _metrics(page)
    want = _independent_figures(dataset)
    assert abs(float(m[("hours", 0)]) - want["hours"]) < 1e-5
    for key in ("conversations", "samples", "perspectives"):
        assert int(m[(key, 0)]) == want[key], key
    assert int(m[("source_conversations", 0)]) == 5
    assert "microturn-demo" in page and "CC0-1.0" in page
    assert 'data-metric="rejected_none"' in page
    # turn-taking distributions: one series of bars each; every gap is a yield, so the gap bars sum to the yields
    index = pq.read_table(dataset / "index").to_pylist()
    assert sum(r["n_interruption"] for r in index) == int(m[("label:interruption", 0)])
    for dist in ("floor_transfer_offset_bins", "gap_bins", "overlap_bins"):
        bars = _bars(page, dist)
        assert sum(bars.values()) > 0 and all(s == 0 for s, _ in bars)
    gaps = _bars(page, "gap_bins")
    assert all(b >= 0 for _, b in gaps) and sum(gaps.values()) == int(m[("events:yield", 0)]) > 0


def test_report_compares_two_datasets_with_jensen_shannon(
    demo_dataset: Path, small_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "compare.html"
    assert report_main([str(demo_dataset / "dataset"), "--compare", str(small_dataset), "--out", str(out)]) == 0
    page = out.read_text()
    _assert_self_contained(page)
    m = _metrics(page)
    want = _independent_figures(small_dataset)
    assert int(m[("samples", 1)]) == want["samples"] and int(m[("conversations", 1)]) == 3
    assert abs(float(m[("hours", 1)]) - want["hours"]) < 1e-5
    rejected = pq.read_table(small_dataset / "rejected.parquet").to_pylist()
    assert len(rejected) == 1 and int(m[("rejected", 1)]) == 1
    assert rejected[0]["kind"] == "no_tracks"
    assert int(m[("rejected:read:no_tracks", 1)]) == 1  # the distribution by stage and kind
    import html

    assert html.escape(rejected[0]["reason"], quote=True) in page  # as the kind's example reason
    for dist in ("floor_transfer_offset_bins", "gap_bins", "overlap_bins"):
        bars = _bars(page, dist)
        bins = sorted({b for _, b in bars})
        p = [bars.get((0, b), 0.0) for b in bins]
        q = [bars.get((1, b), 0.0) for b in bins]
        assert abs(sum(p) - 1) < 1e-6 and abs(sum(q) - 1) < 1e-6  # shares when compared
        expected = jensenshannon(p, q, base=2) ** 2  # scipy gives the distance, the square root of the divergence
        got = float(re.search(rf'data-jsd="{dist}" data-value="([^"]+)"', page).group(1))
        assert abs(got - expected) < 1e-6, dist
    assert float(re.search(r'data-jsd="floor_transfer_offset_bins" data-value="([^"]+)"', page).group(1)) > 0


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_renders_in_headless_chromium_without_console_errors(
    demo_dataset: Path, small_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "compare.html"
    report_main([str(demo_dataset / "dataset"), "--compare", str(small_dataset), "--out", str(out)])
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                f"--screenshot={shot}",
                "--window-size=1280,2000",
                out.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-2000:]
    assert "Uncaught" not in log and "ERROR:CONSOLE" not in log and ":CONSOLE(" not in log
    assert shot.exists() and shot.stat().st_size > 20_000
