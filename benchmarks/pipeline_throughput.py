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

Two other modes time whole processes (start-up and imports included), interleaved, median of --repeats:

    .venv/bin/python benchmarks/pipeline_throughput.py --moshi --hours 1 --workers 2 --repeats 3
    .venv/bin/python benchmarks/pipeline_throughput.py --portable --hours 0.25 --workers 2 --repeats 2

--moshi: the moshi-finetune shape (60 s stereo 24 kHz X.wav + X.json pairs built from the AMI fixture tracks),
`microturn run` at 1 and --workers processes against Lhotse's equivalent at num_jobs 1 and --workers (issue 13.7).
--portable: `microturn run` on the corpus above through Beam's portable runner (Python job service + EXTERNAL SDK
worker pool, started here and stopped by PID) with 1 and --workers stream threads in its one SDK worker (the Python
job service runs one SDK worker per job: Beam 2.77's FnApiRunner.run_via_runner_api never reads
--direct_num_workers), beside the local runner with 1 and --workers worker processes (issue 12.7).
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


def _child_job(input_dir: str, output_dir: str, workers: int, extra: Sequence[str] = ()) -> dict:
    """In a child: import the job, then time job.run alone (`extra`: more job flags, e.g. the S3 options)."""
    import logging

    t0 = time.perf_counter()
    from pipeline import job

    import_s = time.perf_counter() - t0
    logging.basicConfig(level=logging.ERROR)
    argv = ["--input", input_dir, "--output", output_dir, "--direct_num_workers", str(workers)]
    if workers > 1:
        argv += ["--direct_running_mode", "multi_processing"]
    argv += list(extra)
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
    ap.add_argument(
        "--moshi",
        action="store_true",
        help="instead: the moshi-finetune shape (60 s stereo 24 kHz X.wav + X.json from the AMI fixture tracks), "
        "whole `microturn run` processes at 1 and --workers processes against Lhotse's equivalent (--lhotse-python, "
        "default this python), interleaved, median of --repeats",
    )
    ap.add_argument(
        "--portable",
        action="store_true",
        help="instead: whole `microturn run` processes on the benchmark corpus through Beam's portable runner (Python "
        "job service + EXTERNAL worker pool) with 1 and --workers stream threads, beside the local runner",
    )
    ap.add_argument(
        "--s3",
        action="store_true",
        help="instead: `job.run` on one-minute stereo conversations (--hours of them) read from and written to a "
        "local SeaweedFS S3 server on 127.0.0.1, paired with the same job on local disk, 1 and --workers "
        "processes, interleaved, median of --repeats; prints S3/local (goal: at most 1.5)",
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs of each command for --moshi/--portable/--s3 (default 3)"
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
        if args.moshi:
            return moshi_benchmark(args, work)
        if args.portable:
            return portable_benchmark(args, work)
        if args.s3:
            return s3_benchmark(args, work)
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


# --------------------------------------------------------------------------------------------------- whole processes

AMI_SOURCES = Path("/work/shared/fixtures/ami-seriously")
"""The AMI fixture (4 headset tracks of 60 s, 16 kHz, an RTTM and each speaker's words): the moshi corpus' material."""
MOSHI_RATE_HZ = 24_000
MOSHI_CONVERSATION_S = 60


def _ami_tracks(fixture: Path) -> list[tuple[np.ndarray, list[tuple[float, float]], list[str]]]:
    """Each AMI source track at 24 kHz (float32, polyphase 3/2), the RTTM turns of the speaker it belongs to (the
    speaker whose turns carry most of the track's energy, chosen greedily) and words of one transcript file."""
    from scipy.signal import resample_poly

    tracks = []
    for i in range(4):
        with wave.open(str(fixture / "sources" / f"source{i}.wav")) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        tracks.append(pcm)
    turns: dict[str, list[tuple[float, float]]] = {}
    for line in (fixture / "mixture.rttm").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            turns.setdefault(parts[7], []).append((float(parts[3]), float(parts[3]) + float(parts[4])))
    energy = {}
    for k, pcm in enumerate(tracks):
        for spk, segs in turns.items():
            mask = np.zeros(len(pcm), dtype=bool)
            for s, e in segs:
                mask[int(s * RATE_HZ) : int(e * RATE_HZ)] = True
            energy[(k, spk)] = float(np.mean(pcm[mask] ** 2)) if mask.any() else 0.0
    owner: dict[int, str] = {}
    for (k, spk), _ in sorted(energy.items(), key=lambda kv: -kv[1]):
        if k not in owner and spk not in owner.values():
            owner[k] = spk
    letters = "ABCD"
    out = []
    for k, pcm in enumerate(tracks):
        words = (fixture / "text" / f"mixture.{letters[k]}.words_joined.txt").read_text().split()
        out.append((resample_poly(pcm, 3, 2).astype(np.float32), turns[owner[k]], words))
    return out


def _track_words(turns: list[tuple[float, float]], vocab: list[str], shift_s: float, speaker: str) -> list[list]:
    """Words every ~0.3 s through the speaker's turns, the turns moved by `shift_s` (circularly, as the audio is);
    moshi-finetune alignment rows [text, [start, end], speaker]."""
    rows, k = [], 0
    for s, e in turns:
        s, e = (s + shift_s) % MOSHI_CONVERSATION_S, (e + shift_s) % MOSHI_CONVERSATION_S
        t = s
        while e > s and t + 0.25 <= e:
            rows.append([vocab[k % len(vocab)], [round(t, 3), round(t + 0.25, 3)], speaker])
            t, k = t + 0.3, k + 1
    return rows


def make_moshi_corpus(root: Path, num_conversations: int, fixture: Path = AMI_SOURCES) -> Corpus:
    """The moshi-finetune shape: X.wav (stereo 24 kHz 16-bit, 60 s; left = model, right = user) + X.json
    ({"alignments": [[word, [start, end], "SPEAKER_MAIN" | speaker], ...]}) per conversation, built from the AMI
    fixture's headset tracks: conversation i pairs two of the four tracks (the six pairs in turn), both rolled by
    i * 7.3 s (mod 60 s) with a gain per channel, so no two conversations are the same audio."""
    root.mkdir(parents=True, exist_ok=True)
    tracks = _ami_tracks(fixture)
    pairs = [(a, b) for a in range(4) for b in range(4) if a < b]
    n = MOSHI_RATE_HZ * MOSHI_CONVERSATION_S
    wavs = []
    for i in range(num_conversations):
        a, b = pairs[i % len(pairs)]
        shift_s = (i * 7.3) % MOSHI_CONVERSATION_S
        shift = int(shift_s * MOSHI_RATE_HZ)
        gain = 0.7 + 0.3 * ((i * 0.37) % 1.0)
        stereo = np.stack([np.roll(tracks[a][0][:n], shift) * gain, np.roll(tracks[b][0][:n], shift) / gain], axis=1)
        wav = root / f"conv{i:03d}.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(MOSHI_RATE_HZ)
            w.writeframes(np.clip(stereo * 32767, -32768, 32767).astype("<i2").tobytes())
        rows = _track_words(tracks[a][1], tracks[a][2], shift_s, "SPEAKER_MAIN")
        rows += _track_words(tracks[b][1], tracks[b][2], shift_s, "SPEAKER_USER")
        rows.sort(key=lambda r: (r[1][0], r[1][1], r[2]))
        (root / f"conv{i:03d}.json").write_text(json.dumps({"alignments": rows}))
        wavs.append(str(wav))
    return Corpus(root=root, wavs=tuple(wavs), seconds=float(num_conversations * MOSHI_CONVERSATION_S))


LHOTSE_WHOLE_CHILD = r"""
# Lhotse 1.33's idiomatic equivalent of `microturn run` on moshi-finetune pairs, as one whole process (imports
# included): Recording.from_file -> a MonoCut per channel -> resample to 16 kHz (Fbank's default rate, as microturn
# does) or not ("rate": 24000: Fbank configured for 24 kHz) -> Fbank(80) stored with lhotse 1.33's default writer
# (NumpyFilesWriter) -> to_shar(features=numpy).
import json, multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext


def main():
    import torch
    from lhotse import CutSet, Fbank, FbankConfig, Recording, RecordingSet
    args = json.loads(sys.argv[1])
    jobs = args["num_jobs"]
    if jobs > 1:
        torch.set_num_threads(1)  # as lhotse's CLI does: it warns that num_jobs > 1 with more threads can hang
    recordings = RecordingSet.from_recordings(Recording.from_file(p, recording_id=os.path.basename(p)[:-4])
                                              for p in args["wavs"])
    multi = CutSet.from_manifests(recordings=recordings)
    cuts = CutSet.from_cuts(mono for cut in multi for mono in cut.to_mono(mono_downmix=False))
    rate = args["rate"]
    if rate != recordings[0].sampling_rate:
        cuts = cuts.resample(rate)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else nullcontext()
    with pool as ex:
        cuts = cuts.compute_and_store_features(extractor=Fbank(FbankConfig(num_mel_bins=80, sampling_rate=rate)),
                                               storage_path=args["out"] + "/feats", num_jobs=jobs, executor=ex)
    os.makedirs(args["out"] + "/shar")
    cuts.to_shar(args["out"] + "/shar", fields={"features": "numpy"}, shard_size=1000)
    print(json.dumps({"cuts": len(cuts)}))


if __name__ == "__main__":
    main()
"""


def _whole(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Run one whole process (start-up included) to its end; returns its wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited {proc.returncode}:\n{(out + err)[-3000:]}")
    return wall


def _cpu_children_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _tree_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) so far of each process tree rooted at `pids`: every live process's own time plus
    the roots' reaped children's."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in pids:
        for pid in _proc_tree(root):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if pid == root:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / tick


def _interleaved(
    runs: dict[str, tuple[list[str], Path]], repeats: int, env: dict[str, str], services: Sequence[int] = ()
) -> dict[str, list]:
    """Each labelled command `repeats` times, interleaved (A B C A B C ...), each into a fresh output directory;
    returns label -> [(wall s, CPU s), ...], the CPU of the command's process tree plus that used meanwhile by the
    process trees of `services` (PIDs of long-running servers the command talks to). The load average is printed
    before every round."""
    times: dict[str, list] = {label: [] for label in runs}
    for rep in range(repeats):
        _say(f"  round {rep + 1}/{repeats}: {_load()}")
        for label, (argv, out) in runs.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            cpu0, service0 = _cpu_children_s(), _tree_cpu_s(services)
            wall = _whole(argv, env)
            cpu = _cpu_children_s() - cpu0 + _tree_cpu_s(services) - service0
            times[label].append((wall, cpu))
            _say(f"    {label:<44} {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    return times


def _table(times: dict[str, list], seconds: float) -> None:
    head = f"run (median of {len(next(iter(times.values())))})"
    _say(f"  {head:<46} {'wall s':>7} {'CPU s':>7} {'x real time':>12}")
    for label, ts in times.items():
        wall = float(np.median([t[0] for t in ts]))
        cpu = float(np.median([t[1] for t in ts]))
        _say(f"  {label:<46} {wall:>7.2f} {cpu:>7.2f} {seconds / wall:>12.0f}")


def moshi_benchmark(args: argparse.Namespace, work: Path) -> int:
    """Issue 13.7: the moshi-finetune shape (60 s stereo 24 kHz pairs from the AMI tracks), whole processes, microturn
    run at 1 and --workers processes against Lhotse at num_jobs 1 and --workers, median of --repeats, interleaved."""
    num = max(1, round(args.hours * 3600 / MOSHI_CONVERSATION_S))
    _say(f"moshi-finetune shape, whole processes; python {sys.version.split()[0]}; {_load()}")
    t = time.perf_counter()
    corpus = make_moshi_corpus(work / "moshi", num)
    _say(
        f"corpus: {num} stereo 24 kHz conversations x {MOSHI_CONVERSATION_S} s = {corpus.seconds / 3600:.2f} h "
        f"(X.wav + X.json), from {AMI_SOURCES}, made in {time.perf_counter() - t:.1f} s"
    )
    lhotse_py = args.lhotse_python or sys.executable
    script = work / "lhotse_whole.py"
    script.write_text(LHOTSE_WHOLE_CHILD)
    runs: dict[str, tuple[list[str], Path]] = {}
    for n in sorted({1, args.workers}):
        out = work / f"moshi-mt-{n}"
        argv = [sys.executable, "-m", "microturn_cli", "run", "--input", str(corpus.root), "--output", str(out)]
        if n > 1:
            argv += ["--direct_num_workers", str(n), "--direct_running_mode", "multi_processing"]
        runs[f"microturn run, {n} process{'es' if n > 1 else ''}"] = (argv, out)
        for rate in (16_000, MOSHI_RATE_HZ):
            out = work / f"moshi-lhotse-{n}-{rate}"
            params = json.dumps({"wavs": list(corpus.wavs), "out": str(out), "num_jobs": n, "rate": rate})
            runs[f"lhotse, num_jobs {n}, Fbank at {rate // 1000} kHz"] = ([lhotse_py, str(script), params], out)
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    times = _interleaved(runs, args.repeats, env)
    _say(f"\n{_load()}")
    _say(f"Summary, moshi shape ({corpus.seconds / 3600:.2f} h), whole processes including start-up and imports:")
    _table(times, corpus.seconds)
    for n in sorted({1, args.workers}):
        mt = float(np.median([t[0] for t in times[f"microturn run, {n} process{'es' if n > 1 else ''}"]]))
        lh = min(float(np.median([t[0] for t in times[f"lhotse, num_jobs {n}, Fbank at {r} kHz"]])) for r in (16, 24))
        _say(f"  {n} process{'es' if n > 1 else ''}: microturn/lhotse speed {lh / mt:.2f} (against the faster Lhotse)")
    return 0


PORTABLE_MODULES = (
    ("apache_beam.runners.portability.local_job_service_main", "--port"),
    ("apache_beam.runners.worker.worker_pool_main", "--service_port"),
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_service(module: str, flag: str, port: int, log: Path) -> subprocess.Popen:
    """Start a Beam service in its own session (the pool's SDK workers join it) and wait until it listens."""
    import socket

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the pool runs `python`
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, flag, str(port)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=log.parent,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    raise RuntimeError(f"{module} did not listen on {port}: {log.read_text()[-2000:]}")


def _stop_service(proc: subprocess.Popen) -> None:
    """SIGTERM then SIGKILL the service's process group (by its PID: the session it leads) and reap it."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def portable_benchmark(args: argparse.Namespace, work: Path) -> int:
    """Issue 12.7: whole-process `microturn run` on the benchmark corpus (5-minute stereo 16 kHz bundles) through
    Beam's portable job API (Beam's Python job service + an EXTERNAL SDK worker pool, each its own process) with 1
    and --workers --stream_threads in the job's one SDK worker, beside the local runner with 1 and --workers worker
    processes; interleaved, median of
    --repeats. The job service and pool run for the whole benchmark (a cluster's are long-lived), so their own
    start-up is not counted; each job's submission, SDK worker start and run are."""
    num = max(2, math.ceil(args.hours * 3600 / CONVERSATION_S))
    _say(f"portable runner, whole processes; python {sys.version.split()[0]}; {_load()}")
    t = time.perf_counter()
    corpus = make_corpus(work / "corpus", num, CONVERSATION_S, args.seed)
    _say(
        f"corpus: {num} stereo 16 kHz conversations x 5 min = {corpus.seconds / 3600:.2f} h, made in "
        f"{time.perf_counter() - t:.1f} s"
    )
    job_port, pool_port = _free_port(), _free_port()
    services = []
    try:
        for (module, flag), port in zip(PORTABLE_MODULES, (job_port, pool_port), strict=True):
            services.append(_start_service(module, flag, port, work / f"{module.rsplit('.', 1)[-1]}.log"))
        _say(f"job service pid {services[0].pid} on :{job_port}, worker pool pid {services[1].pid} on :{pool_port}")
        portable = [
            "--runner", "PortableRunner", "--job_endpoint", f"localhost:{job_port}",
            "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{pool_port}",
        ]  # fmt: skip
        runs: dict[str, tuple[list[str], Path]] = {}
        for n in sorted({1, args.workers}):
            base = [sys.executable, "-m", "microturn_cli", "run", "--input", str(corpus.root), "--output"]
            local = ["--direct_num_workers", str(n)] + (["--direct_running_mode", "multi_processing"] if n > 1 else [])
            out = work / f"local-{n}"
            runs[f"local runner, {n} worker{'s' if n > 1 else ''}"] = ([*base, str(out), *local], out)
            out = work / f"portable-{n}"
            runs[f"portable, 1 SDK worker, {n} stream thread{'s' if n > 1 else ''}"] = (
                [*base, str(out), *portable, "--stream_threads", str(n)],
                out,
            )
        pool = TreeRss(services[1].pid, interval_s=0.2)
        env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        times = _interleaved(runs, args.repeats, env, services=[p.pid for p in services])
        pool.stop()
        pool_tree = pool.max_procs
    finally:
        for proc in services:
            _stop_service(proc)
    _say(f"\n{_load()}")
    _say(f"Summary, benchmark corpus ({corpus.seconds / 3600:.2f} h), whole `microturn run` processes:")
    _say("  (portable: Beam's Python job service runs one SDK worker per job, whatever --direct_num_workers says;")
    _say("  --stream_threads gives that worker more cores; the EXTERNAL pool's process tree had at most")
    _say(f"  {pool_tree} processes; CPU s counts the job service's and the pool's processes too)")
    _table(times, corpus.seconds)
    return 0


S3_CONVERSATION_S = 60
"""Conversation length of the --s3 corpus: one minute, so that per-file costs (requests, clients) show."""
S3_GOAL = 1.5


def s3_benchmark(args: argparse.Namespace, work: Path) -> int:
    """Issue 23.1: the job with its input, work directory and output on S3 (SeaweedFS `weed mini` on 127.0.0.1, from
    tests/s3_server.py, started here and stopped by PID) against the same job on local disk, on the same one-minute
    stereo conversations; each `job.run` timed in a fresh child process (imports excluded), local and S3 runs
    interleaved, median of --repeats, at 1 and --workers processes; the S3 outputs must equal the local ones."""
    sys.path.insert(0, str(ROOT))
    from tests.s3_server import S3Server

    num = max(2, math.ceil(args.hours * 3600 / S3_CONVERSATION_S))
    _say(f"S3 against local disk, job.run in child processes; python {sys.version.split()[0]}; {_load()}")
    corpus = make_corpus(work / "corpus", num, S3_CONVERSATION_S, args.seed)
    _say(f"corpus: {num} stereo 16 kHz conversations x {S3_CONVERSATION_S} s = {corpus.seconds / 3600:.2f} h")
    server = S3Server.start(work / "seaweedfs")
    try:
        _say(f"SeaweedFS pid {server.process.pid} at {server.endpoint}")
        s3_in = server.upload_tree(corpus.root, "bench/in")
        times: dict[str, list[float]] = {}
        outputs: dict[str, dict] = {}
        for rep in range(args.repeats):
            _say(f"  round {rep + 1}/{args.repeats}: {_load()}")
            for n in sorted({1, args.workers}):
                for where in ("local", "s3"):
                    label = f"{where}, {n} worker{'s' if n > 1 else ''}"
                    if where == "local":
                        out = work / f"out-{n}-{rep}"
                        shutil.rmtree(out, ignore_errors=True)
                        params = {"input_dir": str(corpus.root), "output_dir": str(out), "workers": n}
                    else:
                        out_url = f"s3://{server.bucket}/bench/out-{n}-{rep}"
                        params = {"input_dir": s3_in, "output_dir": out_url, "workers": n}
                        params["extra"] = server.beam_args()
                    r = _run_child(_self_cmd("job", **params))
                    if r["counts"]["conversations_written"] != num or r["counts"]["rejected"]:
                        raise RuntimeError(f"{label}: the job wrote {r['counts']}")
                    times.setdefault(label, []).append(r["run_s"])
                    _say(f"    {label:<20} {r['run_s']:6.2f} s (job.run), {r['cpu_s']:6.2f} s CPU")
                    if rep == 0:
                        outputs[label] = (
                            _local_tree(out) if where == "local" else server.download_tree(f"bench/out-{n}-{rep}")
                        )
        for n in sorted({1, args.workers}):
            w = f"{n} worker{'s' if n > 1 else ''}"
            local, remote = outputs[f"local, {w}"], outputs[f"s3, {w}"]
            remote = {k: v.replace(s3_in.encode(), str(corpus.root).encode()) for k, v in remote.items()}
            if remote != local:
                raise RuntimeError(f"{w}: the S3 output differs from the local one: {sorted(set(remote) ^ set(local))}")
    finally:
        server.stop()
    _say(f"\n{_load()}")
    _say(f"Summary ({num} conversations, {corpus.seconds / 3600:.2f} h), job.run wall s, median of {args.repeats}:")
    _say(f"  {'processes':<10} {'local s':>8} {'S3 s':>8} {'S3/local':>9}")
    worst = 0.0
    for n in sorted({1, args.workers}):
        w = f"{n} worker{'s' if n > 1 else ''}"
        local, s3 = float(np.median(times[f"local, {w}"])), float(np.median(times[f"s3, {w}"]))
        worst = max(worst, s3 / local)
        _say(f"  {n:<10} {local:>8.2f} {s3:>8.2f} {s3 / local:>9.2f}")
    _say(f"  outputs identical; worst S3/local {worst:.2f} (goal <= {S3_GOAL})")
    return 0 if worst <= S3_GOAL else 1


def _local_tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


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
