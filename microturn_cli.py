"""The one `microturn` command; each subcommand is a thin function over the packages.

    microturn --help
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence

logger = logging.getLogger("microturn")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("microturn").setLevel(logging.INFO)
    logging.getLogger("pipeline").setLevel(logging.INFO)
    for noisy in ("apache_beam", "root"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.INFO)


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


def cmd_run(argv: Sequence[str]) -> int:
    from pipeline.job import run
    from schemas.tables import REJECTED_FILE

    if any(a in ("-h", "--help") for a in argv):
        _run_help()
        return 0
    start = time.monotonic()
    try:
        manifest = run(list(argv))
    except ValueError as e:  # bad configuration or input path: say what to fix, no traceback
        print(f"microturn run: error: {e}", file=sys.stderr)
        return 2
    output = next(a.split("=", 1)[1] if "=" in a else argv[i + 1] for i, a in enumerate(argv)
                  if a.split("=", 1)[0] == "--output")
    print(summary_text(manifest, output))
    if manifest["counts"]["rejected"]:
        print(f"rejected inputs and reasons: {output}/{REJECTED_FILE}")
    print(f"done in {time.monotonic() - start:.1f} s")
    return 0


def _run_help() -> None:
    from pipeline.options import MicroturnOptions

    parser = argparse.ArgumentParser(
        prog="microturn run",
        description="Run the Beam job: input bundles -> 200 ms micro-turn WebDataset shards, index.parquet, "
                    "manifest.json and rejected.parquet. Without --runner it runs on Beam's local FnApiRunner; "
                    "add --direct_num_workers N --direct_running_mode multi_processing for N worker processes. "
                    "Any other Beam option passes through (e.g. --runner DataflowRunner ...). Rerunning the same "
                    "command after an interruption resumes: finished conversations and shards are not redone.",
    )
    MicroturnOptions._add_argparse_args(parser)
    parser.print_help()


def cmd_validate(args: argparse.Namespace) -> int:
    from schemas.validate import validate

    report = validate(args.dataset, limit=args.limit)
    print(report.render())
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.job import run
    from schemas.validate import validate
    from synth.demo import make_demo_bundles

    out = os.path.abspath(args.out)
    bundles, dataset = os.path.join(out, "bundles"), os.path.join(out, "dataset")
    if os.path.exists(dataset):
        shutil.rmtree(dataset)
    t0 = time.monotonic()
    print(f"synthesising {args.count} two-party conversations with espeak-ng into {bundles} ...", flush=True)
    make_demo_bundles(bundles, count=args.count, seed=args.seed)
    print(f"  done in {time.monotonic() - t0:.1f} s; running the pipeline ...", flush=True)
    argv = ["--input", bundles, "--output", dataset]
    if args.workers > 1:
        argv += ["--direct_num_workers", str(args.workers), "--direct_running_mode", "multi_processing"]
    manifest = run(argv)
    report = validate(dataset)
    print(summary_text(manifest, dataset))
    print(f"validate: {report.render()}")
    print(f"read it back:  python -c \"from schemas.reader import iter_samples; "
          f"print(next(iter_samples('{dataset}'))['meta.json'])\"")
    return 0 if report.ok else 1


PASSTHROUGH = {
    # command words -> (module, function, help); the function parses the rest of the command line itself
    ("train",): ("trainer.train", "train_main", "train the interaction model on micro-turn shards"),
    ("eval",): ("trainer.evaluate", "eval_main", "print a checkpoint's per-head losses on held-out shards"),
    ("eval", "behaviour"): ("trainer.behaviour", "eval_behaviour_main", "score a checkpoint's turn-taking against "
                                                                          "the dataset's labels, beside baselines"),
    ("eval", "fdbench"): ("trainer.fdbench_eval", "eval_fdbench_main", "Full-Duplex-Bench v1 metrics of response "
                                                                       "WAVs (energy VAD)"),
    ("respond",): ("trainer.respond", "respond_main", "run a checkpoint micro-turn by micro-turn and write its audio"),
    ("inspect",): ("pipeline.tools.inspect", "inspect_main", "draw one sample as a PNG (dMel, words, labels, frames)"),
    ("report",): ("pipeline.tools.report", "report_main", "write a self-contained HTML report of a dataset"),
    ("split",): ("pipeline.tools.split", "split_main", "split a dataset into train/eval, disjoint by conversation and "
                                                 "speaker"),
    ("export", "fdbench"): ("pipeline.tools.fdbench", "export_fdbench_main", "export held-out clips in "
                                                                       "Full-Duplex-Bench's layout"),
    ("synth", "refusals"): ("synth.refusals", "refusals_main", "synthesise spoken refusal conversations as "
                                                               "input bundles"),
    ("eval-align",): ("pipeline.tools.eval_align", "eval_align_main", "measure word alignment against known timings"),
}


def _passthrough(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]] | None:
    for words in sorted(PASSTHROUGH, key=len, reverse=True):
        if tuple(argv[: len(words)]) == words:
            return words, list(argv[len(words):])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="microturn",
        description="microturn: raw conversations -> 200 ms micro-turn shards for interaction models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's own progress too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the pipeline job (see `microturn run --help` for its options)", add_help=False)

    p = sub.add_parser("validate", help="check a written dataset against the contract; exit 1 on violations")
    p.add_argument("dataset", help="dataset directory (the job's --output)")
    p.add_argument("--limit", type=int, default=20, help="how many violations to print (default 20)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("demo", help="synthesise two-party demo conversations with espeak-ng, run the job on "
                                    "them, validate, and print a summary")
    p.add_argument("--out", default="demo-out", help="directory for bundles/ and dataset/ (default demo-out)")
    p.add_argument("--count", type=int, default=5, help="number of conversations (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the dialogue generator (default 0)")
    p.add_argument("--workers", type=int, default=1, help="Beam worker processes (default 1)")
    p.set_defaults(func=cmd_demo)

    for words, (_, _, text) in PASSTHROUGH.items():
        if words[0] not in sub.choices:
            sub.add_parser(words[0], help=text + (f" (`microturn {' '.join(words)} --help`)" if len(words) > 1
                                                   else ""), add_help=False)
    found = _passthrough(argv)
    if found is not None:
        import importlib

        words, rest = found
        module, function, _ = PASSTHROUGH[words]
        _setup_logging("-v" in rest)
        return int(getattr(importlib.import_module(module), function)(rest) or 0)
    if argv and argv[0] == "run":
        verbose = "-v" in argv[1:] or "--verbose" in argv[1:]
        _setup_logging(verbose)
        return cmd_run([a for a in argv[1:] if a not in ("-v", "--verbose")])
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
