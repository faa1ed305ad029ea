"""Issue 13.8: a sample rate prime to 16 kHz must not cost gigabytes (0.1 s at 44,101 Hz took 12.6 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from pipeline.decode import resample_to_16k
from pipeline.resample_bounded import MAX_TABLE_VALUES, resample_any_rate, torchaudio_table_values

ROOT = Path(__file__).resolve().parents[2]

PEAK_SCRIPT = """
import json, resource, sys, time
import numpy as np
from pipeline.decode import decode_file, resample_to_16k
import torch, torchaudio  # imported before the baseline, as the job's workers have them
resample_to_16k(np.zeros(4410, np.float32), 44100)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
pcm, rate = decode_file(sys.argv[1])
out = resample_to_16k(pcm[:, 0].astype(np.float32) / 32768.0, rate)
print(json.dumps({"rate": rate, "n": len(out), "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
                  "seconds": time.perf_counter() - t}))
"""


@pytest.mark.parametrize("rate", [44_100, 22_050, 11_025, 48_000, 8_000])
def test_bounded_path_computes_torchaudios_filter(rate: int) -> None:
    x = np.random.default_rng(rate).standard_normal(rate // 2).astype(np.float32)
    ref = torchaudio.functional.resample(torch.from_numpy(x), rate, 16_000).numpy()
    got = resample_any_rate(x, rate)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 2e-4


@pytest.mark.parametrize("rate", [16_000, 24_000, 44_100, 48_000])
def test_usual_rates_keep_torchaudios_path(rate: int) -> None:
    assert torchaudio_table_values(rate, 16_000) <= MAX_TABLE_VALUES
    x = np.random.default_rng(1).standard_normal(rate).astype(np.float32)
    expected = x if rate == 16_000 else torchaudio.functional.resample(torch.from_numpy(x), rate, 16_000).numpy()
    assert np.array_equal(resample_to_16k(x, rate), expected)


def test_awkward_rate_is_bounded_in_memory_and_time(tmp_path: Path) -> None:
    # before: torchaudio's table for 44,101 -> 16,000 Hz has 706 M values (2.8 GB as float32, 12.6 GB peak measured)
    assert torchaudio_table_values(44_101, 16_000) > 700_000_000
    wav = tmp_path / "odd.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(4410) * 0.05)).astype(np.float32), 44_101, subtype="PCM_16")
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(wav)], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rate"] == 44_101
    assert result["n"] == 1600  # ceil(16000 * 4410 / 44101)
    assert result["peak_kib"] < 100 * 1024, result  # under 100 MB above the baseline
    assert result["seconds"] < 5, result
