"""`microturn run` (the Beam job, pipeline/job.py) and `microturn demo` (espeak-ng conversations -> the job ->
validate).

    microturn run --input BUNDLES --output DATASET [--direct_num_workers 4 --direct_running_mode multi_processing]
    microturn run --input conversations.jsonl --output DATASET    # a manifest, moshi-finetune index or Gander JSONL
    microturn demo --out demo-out --count 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time


def summary_text(manifest: dict, output: str) -> str:
    c = manifest["counts"]
    labels = manifest["label_counts"]
    lines = [
        f"conversations: {c['conversations_written']} written, {c['rejected']} rejected, {c['inputs']} inputs",
        f"hours:         {manifest['hours']:.4f} h of conversation ({manifest['sample_hours']:.4f} h over "
        f"{c['perspectives']} perspectives)",
        f"samples:       {c['samples']} in {c['shards']} shard(s)",
        "labels (micro-turns): " + ", ".join(f"{k} {v}" for k, v in labels.items()),
        f"output:        {output}",
    ]
    return "\n".join(lines)


def cmd_run(argv: list[str]) -> int:
    """`microturn run`: the Beam job; every other Beam option passes through. Exits 1 (saying why, with the
    commonest rejection reasons, on stderr) when nothing was written because every input was rejected."""
    from pipeline.job import run
    from pipeline.runner.outcome import nothing_written
    from schemas.tables import REJECTED_FILE

    if any(a in ("-h", "--help") for a in argv):
        run_parser().print_help()
        return 0
    start = time.monotonic()
    argv = ["--no_progress" if a == "--no-progress" else a for a in argv]  # the trainer's spelling, accepted here too
    try:
        result = run(argv)
    except ValueError as e:  # bad configuration or input path: say what to fix, no traceback
        print(f"microturn run: error: {e}", file=sys.stderr)
        return 2
    print(summary_text(result, result.output))
    if result["counts"]["rejected"]:
        print(f"rejected inputs and reasons: {result.output}/{REJECTED_FILE}")
    elapsed_s = time.monotonic() - start
    speed = f" ({result['hours'] * 3600 / elapsed_s:.0f}x real time)" if result["hours"] > 0 else ""
    print(f"done in {elapsed_s:.1f} s{speed}")
    failed = nothing_written(result, result.output)
    if failed:
        print(f"microturn run: {failed}", file=sys.stderr)
    return 1 if failed else 0


def run_parser() -> argparse.ArgumentParser:
    """The job's own options (pipeline/options.py, a Beam PipelineOptions subclass), for --help."""
    from pipeline.options import MicroturnOptions

    parser = argparse.ArgumentParser(
        prog="microturn run",
        description="Run the Beam job: input bundles -> 200 ms micro-turn WebDataset shards, index/, "
        "manifest.json and rejected.parquet. Without --runner it runs on Beam's local FnApiRunner; "
        "add --direct_num_workers N --direct_running_mode multi_processing for N worker processes. "
        "Any other Beam option passes through (e.g. --runner DataflowRunner ...). Rerunning the same "
        "command after an interruption resumes: finished conversations and shards are not redone.",
    )
    MicroturnOptions._add_argparse_args(parser)
    return parser


def cmd_demo(argv: list[str]) -> int:
    """`microturn demo`: espeak-ng conversations -> the job -> validate -> a summary."""
    from pipeline.job import run
    from pipeline.runner.output_guard import is_our_output
    from schemas.validate import validate
    from synth.demo import make_demo_bundles

    parser = argparse.ArgumentParser(
        prog="microturn demo",
        description="synthesise two-party demo conversations with espeak-ng, run the job on them, validate, and "
        "print a summary",
    )
    parser.add_argument("--out", default="demo-out", help="directory for bundles/ and dataset/ (default demo-out)")
    parser.add_argument("--count", type=int, default=5, help="number of conversations (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the dialogue generator (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="Beam worker processes (default 1)")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    bundles, dataset = os.path.join(out, "bundles"), os.path.join(out, "dataset")
    if os.path.exists(dataset):
        if not is_our_output(dataset):  # never delete a directory the demo did not make
            print(
                f"microturn demo: error: {dataset} exists and is not a microturn dataset; choose another --out",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(dataset)
    t0 = time.monotonic()
    print(f"synthesising {args.count} two-party conversations with espeak-ng into {bundles} ...", flush=True)
    make_demo_bundles(bundles, count=args.count, seed=args.seed)
    print(f"  done in {time.monotonic() - t0:.1f} s; running the pipeline ...", flush=True)
    job_argv = ["--input", bundles, "--output", dataset]
    if args.workers > 1:
        job_argv += ["--direct_num_workers", str(args.workers), "--direct_running_mode", "multi_processing"]
    result = run(job_argv)
    report = validate(dataset)
    print(summary_text(result, result.output))
    print(f"validate: {report.render()}")
    print(
        f'read it back:  python -c "from schemas.reader import iter_samples; '
        f"print(next(iter_samples('{dataset}'))['meta.json'])\""
    )
    return 0 if report.ok else 1
