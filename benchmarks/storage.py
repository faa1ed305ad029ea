"""Shard bytes per conversation-hour (in all and per member type) and the trainer's loader against the disk.

    .venv/bin/python benchmarks/storage.py --hours 1 --demo_count 20 --repeats 3 --v2_code /path/to/format-2/checkout

Two corpora: the demo (espeak-ng two-party conversations, synth/demo.py; both perspectives written) and the 1-hour
24 kHz AMI-track corpus of `benchmarks/pipeline_throughput.py --moshi` (60 s stereo pairs built from the AMI fixture
tracks; one perspective each, the left channel plays the model). For each, `microturn run` writes the dataset with
this checkout (format 3) and, with --v2_code (a checkout of the format-2 code, e.g. `git worktree add /tmp/v2
e2bce23`), with that one too, the runs interleaved --repeats times (median wall and CPU time of whole processes,
the same machine and run; CPU time, of the process tree, is the steadier figure on a shared machine). Then:

1. Bytes per conversation-hour: the shards' bytes (tar headers and padding included) over the manifest's hours, in
   all and per member type (the member name after the key, `.zst` dropped).
2. The loader on the format-3 AMI dataset (page-cached, one process), in one run: reading the shards' bytes raw
   (the floor), `wds.WebDataset(urls).decode(wds_zstd)` (plain webdataset with the documented decoder),
   `schemas.reader.decode_samples` (decompress, unpack, every perspective), `schemas.layout.pack` alone on decoded
   samples, `prepare` + `PackedBatch` (the loader's in-place packer) alone, and the trainer's `Loader` (read,
   decompress, pick the perspective, pack the tiny layout into its batches; 150-micro-turn examples, num_workers
   0): samples/s, examples/s, conversation-hours per wall second and CPU seconds (time.process_time) per
   conversation-hour, the steadier figure on a shared machine. `--loader_dataset DIR` prints only these, for a
   dataset written before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_throughput import make_moshi_corpus  # noqa: E402
from schemas.shard import COMPRESSED_SUFFIX  # noqa: E402


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_job(code: Path, inputs: Path, out: Path) -> tuple[float, float]:
    """`microturn run` of the checkout `code` as a whole process; its wall and CPU seconds (its process tree)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    t, c = time.perf_counter(), _children_cpu_s()
    subprocess.run(
        [sys.executable, "-m", "microturn_cli", "run", "--input", str(inputs), "--output", str(out)],
        cwd=code,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t, _children_cpu_s() - c


def member_bytes(dataset: Path) -> tuple[float, dict[str, int], int]:
    """(conversation hours, {member type: tar bytes incl. its header and padding}, shard bytes in all)."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    by_type: dict[str, int] = defaultdict(int)
    total = 0
    for shard in manifest["shards"]:
        path = dataset / shard["name"]
        total += path.stat().st_size
        with tarfile.open(path) as tar:
            for m in tar:
                name = m.name.split(".", 1)[1].removesuffix(COMPRESSED_SUFFIX)
                by_type[name] += 512 + -(-m.size // 512) * 512
    return float(manifest["hours"]), dict(by_type), total


def print_sizes(label: str, dataset: Path) -> float:
    hours, by_type, total = member_bytes(dataset)
    print(f"  {label}: {total / hours / 1e6:.2f} MB per conversation-hour in all ({total / 1e6:.2f} MB, {hours:.3f} h)")
    for name, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
        print(f"      {name:22s} {n / hours / 1e6:8.3f} MB/h")
    return total / hours


def loader_figures(dataset: Path) -> None:
    """The loader's stages on a format-3 dataset, one process, page-cached: wall and CPU (time.process_time) per
    line; CPU seconds per conversation-hour is the figure that means something on a shared machine."""
    import numpy as np
    import webdataset as wds

    from schemas.layout import pack
    from schemas.reader import decode_samples, shard_urls
    from schemas.shard import wds_zstd
    from trainer.config import preset
    from trainer.data import Loader

    urls = shard_urls(str(dataset))
    hours = json.loads((dataset / "manifest.json").read_text())["hours"]
    for url in urls:  # page-cache the shards
        Path(url).read_bytes()
    print(f"  (load average {os.getloadavg()[0]:.2f}; h/s = conversation-hours per wall second)")

    def line(what: str, t0: tuple[float, float, int], samples: int, examples: int | None = None) -> None:
        seconds, cpu = time.perf_counter() - t0[0], time.process_time() - t0[1]
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - t0[2]
        ex = "" if examples is None else f", {examples / seconds:6.1f} examples/s"
        print(
            f"  {what:46s} {seconds:6.2f} s wall {cpu:6.2f} s CPU  {samples / seconds:8.1f} samples/s{ex}"
            f"  {hours / seconds:7.2f} h/s  {cpu / hours:6.3f} CPU-s per conversation-hour  {faults:6d} page faults"
        )

    def start() -> tuple[float, float, int]:
        return time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    count = sum(1 for _ in wds.WebDataset(urls, shardshuffle=False, empty_check=False))  # stored windows
    t = start()
    n = sum(len(Path(u).read_bytes()) for u in urls)
    line(f"raw shard bytes ({n / 1e6:.1f} MB)", t, count)
    t = start()
    for _ in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode(wds_zstd):
        pass
    line("wds.WebDataset(urls).decode(wds_zstd)", t, count)
    t = start()
    views = [v for raw in wds.WebDataset(urls, shardshuffle=False, empty_check=False) for v in decode_samples(raw)]
    line("schemas.reader.decode_samples (all views)", t, count, len(views))
    cfg = dataclasses.replace(preset("tiny").data, context_microturns=150, num_workers=0)
    t = start()
    for v in views:
        pack(v, cfg.layout, first=0, count=cfg.context_microturns)
    line("schemas.layout.pack alone (reference, no stack)", t, count, len(views))
    try:
        from schemas.layout import PackedBatch, prepare
    except ImportError:  # a checkout from before the in-place packer
        PackedBatch = None  # noqa: N806
    if PackedBatch is not None:
        t = start()
        bs = cfg.batch_size
        for i in range(0, len(views), bs):
            batch = PackedBatch(cfg.layout, cfg.context_microturns, bs)
            for row, v in enumerate(views[i : i + bs]):
                batch.put(row, prepare(v, cfg.layout), first=0)
            batch.arrays()
        line("schemas.layout prepare + PackedBatch (batches)", t, count, len(views))
    del views  # the loader reads the shards itself; 120 decoded windows held here would only crowd the heap
    for which in ("first", "second"):  # the first pass pays the allocator's first page faults on the big arrays
        t = start()
        examples = 0
        for batch in Loader(str(dataset), cfg, epochs=1, shuffle=False):
            examples += int(np.asarray(batch["attendable"].any(dim=1)).sum())
        line(f"trainer Loader (read..pack, collate), {which} pass", t, count, examples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="hours of the AMI-track corpus (default 1.0)")
    ap.add_argument("--demo_count", type=int, default=20, help="demo conversations (default 20)")
    ap.add_argument("--repeats", type=int, default=3, help="job runs per checkout for the median (default 3)")
    ap.add_argument("--v2_code", default=None, help="a checkout of the format-2 code for the 'before' figures")
    ap.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    ap.add_argument(
        "--loader_dataset",
        default=None,
        help="only the loader figures, on this written format-3 dataset (no corpus is built, no job run)",
    )
    args = ap.parse_args(argv)
    if args.loader_dataset:
        print(f"loader on {args.loader_dataset}, one process, page-cached:")
        loader_figures(Path(args.loader_dataset))
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="storage-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from synth.demo import make_demo_bundles

    ami = work / "ami"
    if not ami.exists():
        make_moshi_corpus(ami, max(1, round(args.hours * 3600 / 60)))
    demo = work / "demo"
    if not demo.exists():
        make_demo_bundles(str(demo), count=args.demo_count, seed=0)
    codes = {"format 3 (this checkout)": ROOT}
    if args.v2_code:
        codes = {"format 2 (" + args.v2_code + ")": Path(args.v2_code), **codes}
    for corpus_name, corpus in (("AMI-track 24 kHz", ami), ("demo (espeak-ng)", demo)):
        times: dict[str, list[tuple[float, float]]] = defaultdict(list)
        repeats = args.repeats if corpus is ami else 1
        for _ in range(repeats):  # interleaved, so that load drifts hit both alike
            for label, code in codes.items():
                times[label].append(run_job(code, corpus, work / f"out-{corpus.name}-{code.name}"))
        print(f"\n{corpus_name}: {corpus}")
        for label in codes:
            wall = statistics.median(w for w, _ in times[label])
            cpu = statistics.median(c for _, c in times[label])
            runs = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in times[label])
            print(f"  microturn run, {label}: median wall {wall:.2f} s, CPU {cpu:.2f} s (wall/CPU of each run: {runs})")
        for label, code in codes.items():
            print_sizes(label, work / f"out-{corpus.name}-{code.name}")
    print("\nloader on the format-3 AMI-track dataset, one process, page-cached:")
    loader_figures(work / f"out-ami-{ROOT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
