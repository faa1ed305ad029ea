"""Pipeline throughput beside the decode+dMel floor and Lhotse, measured in one run on a synthetic stereo corpus.

    .venv/bin/python benchmarks/pipeline_throughput.py --hours 1.0 --workers 2

What it does, in order (every measured run is a fresh child process, so peak RSS and start-up are clean):

1. Makes a corpus: ceil(hours * 12) conversations of 5 minutes, each one stereo 16 kHz 16-bit WAV (speaker A on
   channel 0, B on channel 1) with a bundle.json that maps channels to speakers and lists fake words every ~0.3 s in
   alternating turns (with gaps, overlaps and backchannels); the audio is band-limited noise bursts at the word times
   over a -60 dB noise floor. Also a 1-second conversation (for start-up) and, unless --skip-long, one 60-minute one.
2. Start-up: the job on the 1-second conversation, timed from `job.run` to its return (imports excluded). That is
   the fixed cost every run pays whatever its size (Beam pipeline construction, the runner and its worker processes,
   the grouping stages, index/manifest writing). Throughput excluding start-up is
   corpus seconds / (wall of the full job - start-up). As a cross-check, the 1-worker marginal throughput is also
   taken from the slope between the half-corpus and full-corpus runs, which needs no start-up estimate at all.
3. The pipeline on the full corpus with --workers worker processes (multi_processing) and with 1 (in-process).
4. (a) The floor: decode_file + dmel_codes per channel of the same files, a plain loop with nothing around it, in
   one process (and in --workers processes, the fair peer of the multi-process job).
5. (b) Lhotse (installed in a separate venv, never in .venv): Recording.from_file per WAV -> CutSet, one MonoCut
   per channel -> compute_and_store_features(Fbank 80 bins, LilcomChunkyWriter storage) -> to_shar with the
   features field (lilcom), with num_jobs 1 and --workers; and lhotse 1.33's defaults (NumpyFilesWriter, numpy in
   Shar) with --workers. Timed from after `import lhotse`. Lhotse's own CLI sets
   torch to one thread (lhotse/bin/modes/features.py), and it warns that num_jobs > 1 with more threads can hang, so
   this does the same.
6. Memory: peak RSS of every run (the largest single process, and the largest sum over the process tree sampled
   every 50 ms from /proc), half vs full corpus with 1 worker (memory must not grow with conversations), and the
   60-minute conversation through the 1-worker job (target < 2 GB).

Throughput is in conversation-seconds per wall-second (a stereo conversation of 60 s counts 60 s, not 120 s).
The machine may be shared: the load average is printed before and after, and a busy machine lowers every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RATE_HZ = 16_000
CONVERSATION_S = 300
"""Length of each corpus conversation: 5 minutes."""
LONG_CONVERSATION_S = 3_600
"""The single long conversation of the memory check: 60 minutes."""
STARTUP_CONVERSATION_S = 1
RSS_TARGET_BYTES = 2 * 1024**3
VOCAB = (
    "yes",
    "no",
    "well",
    "so",
    "right",
    "okay",
    "the",
    "thing",
    "is",
    "that",
    "we",
    "could",
    "maybe",
    "try",
    "again",
    "tomorrow",
    "really",
    "mhm",
    "sure",
    "about",
    "it",
    "now",
    "then",
    "you",
    "know",
)
BACKCHANNELS = ("mhm", "yeah", "right", "okay")


# --------------------------------------------------------------------------------------------------- corpus


def _band_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise band-limited to roughly 100 Hz - 4 kHz by two moving averages (cheap, no FFT). Shape (n,)."""
    white = rng.standard_normal(n + 160, dtype=np.float32)
    c = np.cumsum(white, dtype=np.float64)
    low = (c[4:] - c[:-4]) / 4.0  # 4-tap average: cut-off ~4 kHz at 16 kHz
    c2 = np.cumsum(low)
    slow = (c2[156:] - c2[:-156]) / 156.0  # 156-tap average: the part below ~100 Hz
    return (low[156 : 156 + n] - slow[:n]).astype(np.float32)


def _words(rng: np.random.Generator, duration_s: float, offset_s: float) -> list[dict]:
    """Fake words on two alternating speakers: turns of 2-10 words, gaps -0.4..0.9 s, some backchannels."""
    words: list[dict] = []
    t, speaker = 0.3, 0
    while True:
        turn = []
        for _ in range(int(rng.integers(2, 11))):
            length = float(rng.uniform(0.15, 0.45))
            if t + length > duration_s - 0.2:
                break
            turn.append({"text": str(rng.choice(VOCAB)), "start": t, "end": t + length, "speaker": "AB"[speaker]})
            t += length + float(rng.uniform(0.02, 0.12))
        if not turn:
            break
        words += turn
        if rng.random() < 0.25 and len(turn) > 3:  # the listener backchannels inside the turn
            mid = turn[len(turn) // 2]
            words.append(
                {
                    "text": str(rng.choice(BACKCHANNELS)),
                    "start": mid["start"],
                    "end": mid["start"] + 0.3,
                    "speaker": "AB"[1 - speaker],
                }
            )
        t = turn[-1]["end"] + float(rng.uniform(-0.4, 0.9))
        t = max(t, turn[-1]["start"] + 0.05)
        speaker = 1 - speaker
    for w in words:
        w["start"], w["end"] = round(w["start"] + offset_s, 4), round(w["end"] + offset_s, 4)
    return words


def make_conversation(directory: Path, conv_id: str, duration_s: int, seed: int) -> None:
    """Write one stereo conversation bundle: conv.wav (int16, 16 kHz, A on channel 0, B on 1) + bundle.json.

    Written in blocks of at most 5 minutes, so a 60-minute conversation needs no more memory than a 5-minute one.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    words: list[dict] = []
    with wave.open(str(directory / "conv.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        for block_start in range(0, duration_s, CONVERSATION_S):
            block_s = min(CONVERSATION_S, duration_s - block_start)
            n = block_s * RATE_HZ
            block_words = _words(rng, block_s, block_start) if block_s >= 1 else []
            stereo = rng.standard_normal((n, 2), dtype=np.float32) * 1e-3  # -60 dB floor: never digital silence
            burst = _band_noise(rng, n)  # one noise for both channels: they are gated at different times
            for ch in (0, 1):
                gain = np.zeros(n, dtype=np.float32)
                for wd in block_words:
                    if wd["speaker"] == "AB"[ch]:
                        lo = int((wd["start"] - block_start) * RATE_HZ)
                        hi = int((wd["end"] - block_start) * RATE_HZ)
                        gain[lo:hi] = rng.uniform(0.1, 0.3)
                stereo[:, ch] += burst * gain
            w.writeframes(np.clip(stereo * 32767, -32768, 32767).astype("<i2").tobytes())
            words += block_words
    bundle = {
        "bundle_version": 1,
        "id": conv_id,
        "language": "en",
        "source": "benchmark-synthetic",
        "licence": "CC0-1.0",
        "split": "train",
        "tracks": [
            {"speaker": "A", "path": "conv.wav", "channel": 0},
            {"speaker": "B", "path": "conv.wav", "channel": 1},
        ],
        "words": words,
    }
    (directory / "bundle.json").write_text(json.dumps(bundle))


@dataclass(frozen=True, slots=True, kw_only=True)
class Corpus:
    root: Path
    wavs: tuple[str, ...]
    seconds: float


def make_corpus(root: Path, num_conversations: int, duration_s: int, seed: int) -> Corpus:
    wavs = []
    for i in range(num_conversations):
        d = root / f"conv{i:03d}"
        make_conversation(d, f"bench-{duration_s}s-{i:03d}", duration_s, seed + i)
        wavs.append(str(d / "conv.wav"))
    return Corpus(root=root, wavs=tuple(wavs), seconds=float(num_conversations * duration_s))


def link_subset(corpus: Corpus, root: Path, count: int) -> Corpus:
    """A corpus of the first `count` conversations, hard-linked (no audio copied; the job does not follow symlinks)."""
    wavs = []
    for wav in corpus.wavs[:count]:
        src = Path(wav).parent
        (root / src.name).mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            os.link(f, root / src.name / f.name)
        wavs.append(str(root / src.name / "conv.wav"))
    per = corpus.seconds / len(corpus.wavs)
    return Corpus(root=root, wavs=tuple(wavs), seconds=per * count)


# --------------------------------------------------------------------------------------------------- measuring


def _proc_tree(root_pid: int) -> list[int]:
    """root_pid and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss:
    """Samples a process tree every `interval_s`: peak of the summed RSS, and the largest single-process high-water
    mark (VmHWM, exact for every process seen alive)."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak_sum_kb = 0
        self.peak_proc_kb = 0
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            pids = _proc_tree(self.pid)
            self.max_procs = max(self.max_procs, len(pids))
            self.peak_sum_kb = max(self.peak_sum_kb, sum(_status_kb(p, "VmRSS") for p in pids))
            self.peak_proc_kb = max([self.peak_proc_kb] + [_status_kb(p, "VmHWM") for p in pids])
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _run_child(argv: Sequence[str], env: dict[str, str] | None = None) -> dict:
    """Run a child that prints one JSON line last; return it with the tree's peak RSS (bytes) added."""
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    rss = TreeRss(proc.pid)
    out, err = proc.communicate()
    rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(argv[:4])} ... exited {proc.returncode}:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_peak_sum_bytes"] = rss.peak_sum_kb * 1024
    result["tree_peak_proc_bytes"] = max(rss.peak_proc_kb * 1024, result.get("ru_maxrss_bytes", 0))
    result["tree_max_procs"] = rss.max_procs
    return result


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its reaped children."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _rusage_bytes() -> dict[str, int]:
    import resource

    return {
        "ru_maxrss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "ru_maxrss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _child_job(input_dir: str, output_dir: str, workers: int) -> dict:
    """In a child: import the job, then time job.run alone."""
    import logging

    t0 = time.perf_counter()
    from pipeline import job

    import_s = time.perf_counter() - t0
    logging.basicConfig(level=logging.ERROR)
    argv = ["--input", input_dir, "--output", output_dir, "--direct_num_workers", str(workers)]
    if workers > 1:
        argv += ["--direct_running_mode", "multi_processing"]
    t1, cpu1 = time.perf_counter(), _cpu_s()
    manifest = job.run(argv)
    run_s, cpu_s = time.perf_counter() - t1, _cpu_s() - cpu1
    usage = _rusage_bytes()
    return {
        "import_s": import_s,
        "run_s": run_s,
        "cpu_s": cpu_s,
        "counts": manifest["counts"],
        "hours": manifest["hours"],
        **usage,
        "ru_maxrss_bytes": max(usage.values()),
    }


def _floor_one(wav: str) -> float:
    """decode_file + dmel_codes of every channel of one file; returns the conversation's seconds."""
    from pipeline.decode import decode_file, resample_to_16k
    from pipeline.features import dmel_codes

    pcm, rate = decode_file(wav)
    for ch in range(pcm.shape[1]):
        x = pcm[:, ch].astype(np.float32)
        if pcm.dtype == np.int16:
            x /= 32768.0
        dmel_codes(resample_to_16k(x, rate))
    return pcm.shape[0] / rate


def _child_floor(wavs: Sequence[str], procs: int, torch_threads: int) -> dict:
    t0 = time.perf_counter()
    import torch

    import pipeline.decode  # noqa: F401
    import pipeline.features  # noqa: F401

    if torch_threads:
        torch.set_num_threads(torch_threads)
    threads = torch.get_num_threads()
    import_s = time.perf_counter() - t0
    t1, cpu1 = time.perf_counter(), _cpu_s()
    if procs == 1:
        seconds = sum(_floor_one(w) for w in wavs)
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(procs) as pool:
            seconds = sum(pool.map(_floor_one, wavs, chunksize=1))
    run_s, cpu_s = time.perf_counter() - t1, _cpu_s() - cpu1
    usage = _rusage_bytes()
    return {
        "import_s": import_s,
        "run_s": run_s,
        "cpu_s": cpu_s,
        "seconds": seconds,
        "torch_threads": threads,
        **usage,
        "ru_maxrss_bytes": max(usage.values()),
    }


LHOTSE_CHILD = r"""
import json, multiprocessing, os, resource, sys, time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext


def main():
    t0 = time.perf_counter()
    import torch
    import lhotse
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, Recording, RecordingSet
    import_s = time.perf_counter() - t0
    args = json.loads(sys.argv[1])
    torch.set_num_threads(1)  # as lhotse's own `lhotse feat extract` CLI does (lhotse/bin/modes/features.py)

    def cpu():
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    t1, cpu1 = time.perf_counter(), cpu()
    recordings = RecordingSet.from_recordings(Recording.from_file(p, recording_id=f"r{i:04d}")
                                              for i, p in enumerate(args["wavs"]))
    multi = CutSet.from_manifests(recordings=recordings)  # a stereo recording -> one MultiCut
    cuts = CutSet.from_cuts(mono for cut in multi for mono in cut.to_mono(mono_downmix=False))  # a cut per channel
    t2 = time.perf_counter()
    # lilcom: LilcomChunkyWriter + lilcom in Shar, as Lhotse's recipes and icefall do; numpy: lhotse 1.33's defaults
    # (NumpyFilesWriter) and lossless numpy arrays in Shar.
    storage = LilcomChunkyWriter if args["storage"] == "lilcom" else None
    # Lhotse's own default pool (spawn), made here only so that its workers are joined before the CPU time is read.
    jobs = args["num_jobs"]
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else nullcontext()
    with pool as ex:
        cuts = cuts.compute_and_store_features(extractor=Fbank(FbankConfig(num_mel_bins=80)), storage_type=storage,
                                               storage_path=args["out"] + "/feats", num_jobs=jobs, executor=ex)
    t3 = time.perf_counter()
    os.makedirs(args["out"] + "/shar")
    cuts.to_shar(args["out"] + "/shar", fields={"features": args["storage"]}, shard_size=1000)
    t4, cpu4 = time.perf_counter(), cpu()
    print(json.dumps({"import_s": import_s, "manifests_s": t2 - t1, "features_s": t3 - t2, "shar_s": t4 - t3,
                      "run_s": t4 - t1, "cpu_s": cpu4 - cpu1, "cuts": len(cuts),
                      "seconds": sum(r.duration for r in recordings),
                      "lhotse_version": lhotse.__version__, "torch_version": torch.__version__,
                      "ru_maxrss_bytes": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024}))


if __name__ == "__main__":  # lhotse's num_jobs > 1 starts processes with spawn, which re-imports this file
    main()
"""


# --------------------------------------------------------------------------------------------------- reporting


def _gb(n: float) -> str:
    return f"{n / 1024**3:.2f} GB"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--hours",
        type=float,
        default=1.0,
        help="hours of conversation audio in the corpus, in 5-minute conversations (default 1.0)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes for the multi-process runs (pipeline, floor, Lhotse num_jobs); the "
        "1-process runs are always made too (default 2)",
    )
    ap.add_argument("--skip-lhotse", action="store_true", help="do not run the Lhotse comparison")
    ap.add_argument("--skip-long", action="store_true", help="skip the 60-minute single-conversation memory check")
    ap.add_argument(
        "--lhotse-python",
        default=None,
        help="python of a separate venv with lhotse installed, e.g. /tmp/bench-venv/bin/python (see "
        "benchmarks/README.md; default: none, the Lhotse comparison is skipped)",
    )
    ap.add_argument(
        "--skip-align",
        action="store_true",
        help="do not measure the align stage (pocketsphinx on espeak-ng demo conversations)",
    )
    ap.add_argument(
        "--align-conversations",
        type=int,
        default=2,
        help="demo conversations (~30 s each, two speakers) for the align stage (default 2)",
    )
    ap.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory (corpus and outputs)")
    ap.add_argument("--seed", type=int, default=0, help="corpus random seed (default 0)")
    ap.add_argument("--_child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        kind, params = args._child[0], json.loads(args._child[1])
        result = _child_job(**params) if kind == "job" else _child_floor(**params)
        print(json.dumps(result), flush=True)
        return 0
    if args.hours <= 0 or args.workers < 1:
        raise ValueError(f"--hours must be > 0 and --workers >= 1, got {args.hours} and {args.workers}")

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="microturn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _benchmark(args, work)
    finally:
        if args.keep:
            _say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _self_cmd(kind: str, **params: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--_child", kind, json.dumps(params)]


def _job(corpus: Corpus, out: Path, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    r = _run_child(_self_cmd("job", input_dir=str(corpus.root), output_dir=str(out), workers=workers))
    written = r["counts"]["conversations_written"]
    if written != len(corpus.wavs) or r["counts"]["rejected"]:
        raise RuntimeError(f"the job wrote {written} of {len(corpus.wavs)} conversations: {r['counts']}")
    return r


def _benchmark(args: argparse.Namespace, work: Path) -> int:
    workers = args.workers
    num = max(2, math.ceil(args.hours * 3600 / CONVERSATION_S))
    _say(f"microturn pipeline throughput benchmark; python {sys.version.split()[0]}; {_load()}")
    _say(f"working directory {work}")

    t = time.perf_counter()
    corpus = make_corpus(work / "corpus", num, CONVERSATION_S, args.seed)
    half = link_subset(corpus, work / "corpus-half", num // 2)
    tiny = make_corpus(work / "corpus-tiny", 1, STARTUP_CONVERSATION_S, args.seed + 10_000)
    long = None if args.skip_long else make_corpus(work / "corpus-long", 1, LONG_CONVERSATION_S, args.seed + 20_000)
    _say(
        f"corpus: {num} stereo conversations x {CONVERSATION_S // 60} min = {corpus.seconds / 3600:.2f} h "
        f"({sum(os.path.getsize(w) for w in corpus.wavs) / 1e9:.2f} GB of WAV)"
        f"{'' if long is None else ' + one 60-min conversation'}, made in {time.perf_counter() - t:.1f} s"
    )

    rows: list[tuple[str, float, float, float, str]] = []  # label, wall s, conv-s/s, conv-s/CPU-s, peak RSS
    pipe: dict[int, float] = {}

    def pipeline_runs(n_workers: int) -> dict:
        mode = f"{n_workers} worker processes (multi_processing)" if n_workers > 1 else "1 worker (in-process)"
        s = _job(tiny, work / f"out-tiny-{n_workers}", n_workers)
        full = _job(corpus, work / f"out-full-{n_workers}", n_workers)
        startup = s["run_s"]
        tput = corpus.seconds / max(full["run_s"] - startup, 1e-9)
        pipe[n_workers] = tput
        _say(f"\npipeline, {mode}:")
        _say(
            f"  start-up (job.run on one {STARTUP_CONVERSATION_S}-s conversation, imports excluded): "
            f"{startup:.2f} s  [imports {s['import_s']:.2f} s, not counted anywhere]"
        )
        _say(
            f"  full corpus: job.run {full['run_s']:.1f} s -> {corpus.seconds / full['run_s']:.0f} conv-s/s "
            f"including start-up, {tput:.0f} conv-s/s excluding it; {full['counts']['samples']} samples in "
            f"{full['counts']['shards']} shards"
        )
        _say(
            f"  peak RSS: largest process {_gb(full['tree_peak_proc_bytes'])}, whole process tree "
            f"{_gb(full['tree_peak_sum_bytes'])} ({full['tree_max_procs']} processes at most); getrusage: "
            f"self {_gb(full['ru_maxrss_self_bytes'])}, children {_gb(full['ru_maxrss_children_bytes'])}"
        )
        cpu_tput = corpus.seconds / max(full["cpu_s"] - s["cpu_s"], 1e-9)
        rows.append((f"pipeline, {mode}", full["run_s"] - startup, tput, cpu_tput, _gb(full["tree_peak_sum_bytes"])))
        return full

    full_n = pipeline_runs(workers) if workers > 1 else None
    full_1 = pipeline_runs(1)
    del full_n

    # Memory vs number of conversations, and the slope cross-check (1 worker).
    half_1 = _job(half, work / "out-half-1", 1)
    slope = (corpus.seconds - half.seconds) / max(full_1["run_s"] - half_1["run_s"], 1e-9)
    growth = full_1["tree_peak_sum_bytes"] / half_1["tree_peak_sum_bytes"]
    _say(
        f"\nmemory vs conversations (1 worker): {len(half.wavs)} conversations peak "
        f"{_gb(half_1['tree_peak_sum_bytes'])}, {len(corpus.wavs)} conversations peak "
        f"{_gb(full_1['tree_peak_sum_bytes'])} (ratio {growth:.2f}; flat is ~1.0)"
    )
    _say(
        f"  cross-check, start-up-free: marginal throughput from the slope between them "
        f"({half_1['run_s']:.1f} s -> {full_1['run_s']:.1f} s for +{(corpus.seconds - half.seconds) / 60:.0f} min) "
        f"= {slope:.0f} conv-s/s; implied start-up {half_1['run_s'] - half.seconds / slope:.1f} s"
    )
    if long is not None:
        lr = _job(long, work / "out-long-1", 1)
        ok = "under" if lr["tree_peak_sum_bytes"] < RSS_TARGET_BYTES else "OVER"
        _say(
            f"  one 60-min stereo conversation, 1 worker: job.run {lr['run_s']:.1f} s, peak RSS "
            f"{_gb(lr['tree_peak_sum_bytes'])} ({ok} the 2 GB target)"
        )

    # (a) the floor
    floor: dict[int, float] = {}
    floor_best: dict[int, float] = {}
    _say("\nfloor (a): decode_file + dmel_codes per channel, plain loop, imports excluded:")
    for procs in sorted({workers, 1}, reverse=True):
        for threads in (0, 1):  # 0: torch's default thread count, as the pipeline runs it today
            r = _run_child(_self_cmd("floor", wavs=list(corpus.wavs), procs=procs, torch_threads=threads))
            tput = r["seconds"] / r["run_s"]
            label = f"floor, {procs} process{'es' if procs > 1 else ''}, torch threads {r['torch_threads']}"
            if threads == 0:
                floor[procs] = tput
                label += " (default)"
            floor_best[procs] = max(floor_best.get(procs, 0.0), tput)
            _say(f"  {label}: {r['run_s']:.1f} s -> {tput:.0f} conv-s/s, peak RSS {_gb(r['tree_peak_sum_bytes'])}")
            rows.append((label, r["run_s"], tput, r["seconds"] / r["cpu_s"], _gb(r["tree_peak_sum_bytes"])))

    # (b) Lhotse
    lhotse: dict[int, float] = {}
    if args.skip_lhotse:
        _say("\nLhotse (b): skipped (--skip-lhotse)")
    elif args.lhotse_python is None or not Path(args.lhotse_python).exists():
        _say(
            f"\nLhotse (b): skipped, no --lhotse-python ({args.lhotse_python or 'not given'}). Create one (outside "
            "the project venv) with\n"
            "  python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install torch==2.13.0 && "
            "/tmp/bench-venv/bin/pip install lhotse soundfile urllib3 lilcom\n"
            "(torch first: the CPU wheel on local disk; a plain `pip install lhotse` would pull a multi-GB CUDA "
            "torch; lhotse 1.33 imports urllib3 without declaring it), then pass "
            "--lhotse-python /tmp/bench-venv/bin/python."
        )
    else:
        script = work / "lhotse_child.py"
        script.write_text(LHOTSE_CHILD)
        _say(
            "\nLhotse (b): Recording.from_file -> CutSet (a MonoCut per channel) -> Fbank(80) stored with "
            "LilcomChunkyWriter -> to_shar(features=lilcom); timed from after `import lhotse`:"
        )
        for jobs, storage in [(j, "lilcom") for j in sorted({workers, 1}, reverse=True)] + [(workers, "numpy")]:
            out = work / f"lhotse-{jobs}-{storage}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            r = _run_child(
                [
                    args.lhotse_python,
                    str(script),
                    json.dumps({"wavs": list(corpus.wavs), "out": str(out), "num_jobs": jobs, "storage": storage}),
                ]
            )
            tput = r["seconds"] / r["run_s"]
            lhotse[jobs] = max(lhotse.get(jobs, 0.0), tput)
            what = "LilcomChunkyWriter, shar lilcom" if storage == "lilcom" else "default NumpyFilesWriter, shar numpy"
            _say(
                f"  lhotse {r['lhotse_version']} (torch {r['torch_version']}), num_jobs {jobs}, {what}: "
                f"{r['run_s']:.1f} s (manifests {r['manifests_s']:.1f}, features {r['features_s']:.1f}, shar "
                f"{r['shar_s']:.1f}; import {r['import_s']:.1f} not counted) -> {tput:.0f} conv-s/s, {r['cuts']} "
                f"cuts, peak RSS {_gb(r['tree_peak_sum_bytes'])}"
            )
            rows.append(
                (
                    f"lhotse, num_jobs {jobs}, {storage}",
                    r["run_s"],
                    tput,
                    r["seconds"] / r["cpu_s"],
                    _gb(r["tree_peak_sum_bytes"]),
                )
            )

    align = None if args.skip_align else _align_stage(work / "align", args.align_conversations, args.seed)

    _say(f"\n{_load()}")
    _say(
        f"\nSummary: {corpus.seconds / 3600:.2f} h of stereo conversation; throughput in conversation-seconds per "
        "wall-second (x real time), pipeline excluding start-up"
    )
    _say(f"  {'run':<52} {'wall s':>8} {'conv-s/s':>9} {'conv-s/CPU-s':>13} {'peak RSS':>9}")
    for label, run_s, tput, cpu_tput, rss in rows:
        _say(f"  {label:<52} {run_s:>8.1f} {tput:>9.0f} {cpu_tput:>13.0f} {rss:>9}")
    _say(
        "  (conv-s/CPU-s: per CPU-second of user+system time of the run's processes; less sensitive to other load "
        "on a shared machine than wall time)"
    )
    _say("  ratios at the same process count (lhotse: its faster variant; floor best: 1 torch thread per process):")
    for n in sorted(pipe, reverse=True):
        parts = [
            f"pipeline/floor {pipe[n] / floor[n]:.2f}",
            f"pipeline/floor best {pipe[n] / floor_best[n]:.2f}",
            f"pipeline/lhotse {pipe[n] / lhotse[n]:.2f}" if n in lhotse else "lhotse not measured",
        ]
        _say(f"    {n} process{'es' if n > 1 else ''}: " + ", ".join(parts))
    if align is not None:
        _say(
            f"  align stage (pocketsphinx, known text, 1 process, CPU): {align['audio_s']:.0f} s of conversation in "
            f"{align['wall_s']:.1f} s: {align['audio_s'] / align['wall_s']:.1f} conv-s/s, "
            f"{align['audio_s'] / align['cpu_s']:.1f} conv-s/CPU-s ({align['conversations']} demo conversations)"
        )
    return 0


# --- align stage --------------------------------------------------------------------------------------------------


def _align_stage(root: Path, count: int, seed: int) -> dict:
    """The align stage alone (pipeline.align.align with pocketsphinx, known text) on espeak-ng demo conversations,
    in this process: conversation seconds per wall second and per CPU second, decoding and model loading excluded.
    The spine's corpus has no speech to align, hence the demo speech."""
    from pipeline.aligners import AlignerConfig, load_backend
    from pipeline.tools.eval_align import demo_conversations, evaluate

    t = time.perf_counter()
    convs = demo_conversations(root, count=count, seed=seed)
    backend = load_backend(AlignerConfig(backend="pocketsphinx"))
    _say(f"\nalign stage: {count} demo conversations made and pocketsphinx loaded in {time.perf_counter() - t:.1f} s")
    cpu = time.process_time()
    report = evaluate(convs, backend, mode="text")
    cpu_s = time.process_time() - cpu  # includes decoding, which `align_wall_s` does not: a lower bound per CPU-s
    f = report.figures()
    _say(
        f"  {report.audio_s:.0f} s aligned, {f['audio_s_per_wall_s']} conv-s/s; "
        f"{100 * f['same_microturn']:.1f} % of words in the correct micro-turn"
    )
    return {"conversations": count, "audio_s": report.audio_s, "wall_s": report.align_wall_s, "cpu_s": cpu_s}


if __name__ == "__main__":
    sys.exit(main())
