"""Peak memory of `microturn run` against the number of conversations: flat means no step holds the whole corpus.

    .venv/bin/python benchmarks/pipeline_memory.py --counts 300 3000

Builds `--counts` corpora of short generated two-speaker conversations (`--seconds` each, 16 kHz noise WAVs with
given words, no TTS), runs `python -m microturn_cli run` on each in a fresh process and samples the summed RSS of
that process and all its descendants from /proc every `--interval_s` (0.1 s); prints the peak (MB; the median of
`--repeat` runs), the wall time and the ratio of each peak to the first. `--code DIR` runs the job from another
checkout (e.g. a `git archive` of an older commit extracted to /tmp) by putting DIR first on PYTHONPATH; this
script itself only needs numpy.
Goal (issue 12): the peak at 3,000 conversations at most 1.25 x the peak at 300.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pipeline_throughput import TreeRss  # the same process-tree RSS sampler (benchmarks/ is sys.path[0])

ROOT = Path(__file__).resolve().parent.parent
RATE_HZ = 16_000
WORDS = ("yes", "well", "maybe", "tomorrow", "okay", "right")


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())


def make_corpus(root: Path, count: int, seconds: float, seed: int = 0) -> None:
    """`count` bundles of two noise WAVs of `seconds` each, with a few given words alternating between A and B."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE_HZ)
    for i in range(count):
        d = root / f"c{i:06d}"
        d.mkdir(parents=True)
        for speaker in "AB":
            _write_wav(d / f"{speaker}.wav", 0.05 * rng.standard_normal(n))
        words, t = [], 0.1
        while t + 0.3 < seconds:
            words.append(
                {"text": WORDS[len(words) % len(WORDS)], "start": t, "end": t + 0.3, "speaker": "AB"[len(words) % 2]}
            )
            t += 0.45
        bundle = {
            "id": f"mem-{i:06d}",
            "language": "en",
            "source": "benchmark",
            "licence": "CC0-1.0",
            "tracks": [{"speaker": "A", "path": "A.wav"}, {"speaker": "B", "path": "B.wav"}],
            "words": [{**w, "start": round(w["start"], 3), "end": round(w["end"], 3)} for w in words],
        }
        (d / "bundle.json").write_text(json.dumps(bundle))


def run_job(input_dir: Path, output_dir: Path, code: Path, workers: int, interval_s: float) -> tuple[float, float]:
    """(peak summed RSS of the job's process tree in MB, wall seconds)."""
    argv = [sys.executable, "-m", "microturn_cli", "run", "--input", str(input_dir), "--output", str(output_dir)]
    if workers > 1:
        argv += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rss = TreeRss(proc.pid, interval_s)
    _, stderr = proc.communicate()
    rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"microturn run failed ({proc.returncode}):\n{stderr.decode(errors='replace')[-3000:]}")
    return rss.peak_sum_kb / 1024, time.monotonic() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[300, 3000], help="conversations per corpus")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per conversation (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="job worker processes (default 1: in-process)")
    parser.add_argument("--interval_s", type=float, default=0.1, help="seconds between RSS samples")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per corpus; the median peak is used (start-up peaks vary by ~10%%)"
    )
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose microturn_cli runs (default: this)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="microturn-mem-"))
    results = []
    try:
        for count in args.counts:
            t = time.monotonic()
            make_corpus(work / f"in{count}", count, args.seconds)
            made = time.monotonic() - t
            runs = []
            for attempt in range(args.repeat):
                out = work / f"out{count}-{attempt}"
                runs.append(run_job(work / f"in{count}", out, args.code, args.workers, args.interval_s))
                shutil.rmtree(out)
            peak_mb, wall_s = sorted(runs)[len(runs) // 2]
            results.append((count, peak_mb, wall_s))
            peaks = ", ".join(f"{p:.0f}" for p, _ in runs)
            print(
                f"{count:>7} conversations: peak RSS {peak_mb:8.1f} MB (runs: {peaks}), job {wall_s:6.1f} s "
                f"(corpus made in {made:.1f} s)"
            )
            shutil.rmtree(work / f"in{count}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results[0][1]
    for count, peak_mb, _ in results[1:]:
        print(f"ratio {count} / {results[0][0]}: {peak_mb / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
