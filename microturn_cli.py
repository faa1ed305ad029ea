"""The one `microturn` command; each subcommand is a thin function over the packages.

    microturn --help

`-v`/`--verbose` may stand before or after the subcommand (`microturn -v report ...`, `microturn report -v ...`).
Logging is configured here, once, for every subcommand: our packages log INFO (rank 0 only under torchrun), other
libraries WARNING (INFO with -v); each line carries the torchrun rank (RANK, 0 without torchrun). Flags are spelled
with underscores (Beam forces them for `run`); the older hyphen spellings of the trainer's and the refusal
synthesiser's flags are still accepted, unlisted.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("microturn")

OUR_LOGGERS = ("microturn", "pipeline", "schemas", "synth", "trainer", "kernels")
VERBOSE_FLAGS = ("-v", "--verbose")


def setup_logging(verbose: bool) -> None:
    """Configure logging for the whole process (replacing any earlier setup); see the module docstring."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.ERROR)


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
    """`microturn run`: the Beam job; every other Beam option passes through."""
    from pipeline.job import run
    from schemas.tables import REJECTED_FILE

    if any(a in ("-h", "--help") for a in argv):
        _run_help()
        return 0
    start = time.monotonic()
    try:
        manifest = run(argv)
    except ValueError as e:  # bad configuration or input path: say what to fix, no traceback
        print(f"microturn run: error: {e}", file=sys.stderr)
        return 2
    output = next(
        a.split("=", 1)[1] if "=" in a else argv[i + 1] for i, a in enumerate(argv) if a.split("=", 1)[0] == "--output"
    )
    print(summary_text(manifest, output))
    if manifest["counts"]["rejected"]:
        print(f"rejected inputs and reasons: {output}/{REJECTED_FILE}")
    print(f"done in {time.monotonic() - start:.1f} s")
    return 0


def _run_help() -> None:
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
    parser.print_help()


def cmd_validate(argv: list[str]) -> int:
    """`microturn validate`: check a dataset against the contract; exit 1 on violations."""
    from schemas.validate import validate

    parser = argparse.ArgumentParser(prog="microturn validate", description=COMMANDS[("validate",)][1])
    parser.add_argument("dataset", help="dataset directory (the job's --output)")
    parser.add_argument("--limit", type=int, default=20, help="how many violations to print (default 20)")
    args = parser.parse_args(argv)
    report = validate(args.dataset, limit=args.limit)
    print(report.render())
    return 0 if report.ok else 1


def cmd_demo(argv: list[str]) -> int:
    """`microturn demo`: espeak-ng conversations -> the job -> validate -> a summary."""
    from pipeline.job import run
    from schemas.validate import validate
    from synth.demo import make_demo_bundles

    parser = argparse.ArgumentParser(prog="microturn demo", description=COMMANDS[("demo",)][1])
    parser.add_argument("--out", default="demo-out", help="directory for bundles/ and dataset/ (default demo-out)")
    parser.add_argument("--count", type=int, default=5, help="number of conversations (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the dialogue generator (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="Beam worker processes (default 1)")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    bundles, dataset = os.path.join(out, "bundles"), os.path.join(out, "dataset")
    if os.path.exists(dataset):
        shutil.rmtree(dataset)
    t0 = time.monotonic()
    print(f"synthesising {args.count} two-party conversations with espeak-ng into {bundles} ...", flush=True)
    make_demo_bundles(bundles, count=args.count, seed=args.seed)
    print(f"  done in {time.monotonic() - t0:.1f} s; running the pipeline ...", flush=True)
    job_argv = ["--input", bundles, "--output", dataset]
    if args.workers > 1:
        job_argv += ["--direct_num_workers", str(args.workers), "--direct_running_mode", "multi_processing"]
    manifest = run(job_argv)
    report = validate(dataset)
    print(summary_text(manifest, dataset))
    print(f"validate: {report.render()}")
    print(
        f'read it back:  python -c "from schemas.reader import iter_samples; '
        f"print(next(iter_samples('{dataset}'))['meta.json'])\""
    )
    return 0 if report.ok else 1


def cmd_train(argv: list[str]) -> int:
    from trainer.train import train_main

    return train_main(argv)


def cmd_eval(argv: list[str]) -> int:
    """`microturn eval`: per-head losses; its --help also names the two-word `eval ...` commands."""
    from trainer.evaluate import build_parser, eval_main

    if any(a in ("-h", "--help") for a in argv):
        parser = build_parser()
        others = [(w, text) for w, (_, text) in COMMANDS.items() if len(w) > 1 and w[0] == "eval"]
        parser.epilog = "other eval commands (each prints its own --help): " + "; ".join(
            f"`microturn {' '.join(w)}`: {text}" for w, text in others
        )
        parser.parse_args(argv)  # prints the help and exits
    return eval_main(argv)


def cmd_eval_behaviour(argv: list[str]) -> int:
    from trainer.behaviour import eval_behaviour_main

    return eval_behaviour_main(argv)


def cmd_eval_fdbench(argv: list[str]) -> int:
    from trainer.fdbench_eval import eval_fdbench_main

    return eval_fdbench_main(argv)


def cmd_respond(argv: list[str]) -> int:
    from trainer.respond import respond_main

    return respond_main(argv)


def cmd_inspect(argv: list[str]) -> int:
    from pipeline.tools.inspect import inspect_main

    return inspect_main(argv)


def cmd_report(argv: list[str]) -> int:
    from pipeline.tools.report import report_main

    return report_main(argv)


def cmd_split(argv: list[str]) -> int:
    from pipeline.tools.split import split_main

    return split_main(argv)


def cmd_export_fdbench(argv: list[str]) -> int:
    from pipeline.tools.fdbench import export_fdbench_main

    return export_fdbench_main(argv)


def cmd_synth_refusals(argv: list[str]) -> int:
    from synth.refusals import refusals_main

    return refusals_main(argv)


def cmd_eval_align(argv: list[str]) -> int:
    """`microturn eval-align`: without --input, first writes --count demo bundles (seed --seed) to a temporary
    directory, as `microturn demo` does, and measures on those."""
    from pipeline.tools.eval_align import build_parser, eval_align_main

    args, _ = build_parser().parse_known_args(argv)  # -h/--help prints eval-align's help and exits here
    if args.input is not None:
        return eval_align_main(argv)
    from synth.demo import make_demo_bundles

    with tempfile.TemporaryDirectory(prefix="microturn-eval-align-") as tmp:
        make_demo_bundles(tmp, count=args.count, seed=args.seed)
        return eval_align_main([*argv, "--input", tmp])


Command = Callable[[list[str]], int]
COMMANDS: dict[tuple[str, ...], tuple[Command, str]] = {
    # command words -> (function over the rest of the command line, help)
    ("run",): (cmd_run, "run the pipeline job (see `microturn run --help` for its options)"),
    ("validate",): (cmd_validate, "check a written dataset against the contract; exit 1 on violations"),
    ("demo",): (
        cmd_demo,
        "synthesise two-party demo conversations with espeak-ng, run the job on them, validate, and print a summary",
    ),
    ("train",): (cmd_train, "train the interaction model on micro-turn shards"),
    ("eval", "behaviour"): (
        cmd_eval_behaviour,
        "score a checkpoint's turn-taking against the dataset's labels, beside baselines",
    ),
    ("eval", "fdbench"): (cmd_eval_fdbench, "Full-Duplex-Bench v1 metrics of response WAVs (energy VAD)"),
    ("eval",): (cmd_eval, "print a checkpoint's per-head losses on held-out shards"),
    ("respond",): (cmd_respond, "run a checkpoint micro-turn by micro-turn and write its words and audio"),
    ("inspect",): (cmd_inspect, "draw one sample as a PNG (dMel, words, labels, frames)"),
    ("report",): (cmd_report, "write a self-contained HTML report of a dataset"),
    ("split",): (cmd_split, "split a dataset into train/eval, disjoint by conversation and speaker"),
    ("export", "fdbench"): (cmd_export_fdbench, "export held-out clips in Full-Duplex-Bench's layout"),
    ("synth", "refusals"): (cmd_synth_refusals, "synthesise spoken refusal conversations as input bundles"),
    ("eval-align",): (cmd_eval_align, "measure word alignment against known timings"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microturn",
        description="microturn: raw conversations -> 200 ms micro-turn shards for interaction models.",
        epilog="Every command takes -v/--verbose (also after the command word) and prints its own --help.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's and other libraries' progress too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for words, (_, text) in COMMANDS.items():
        name = " ".join(words)
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in VERBOSE_FLAGS for a in argv)
    words = [a for a in argv if a not in VERBOSE_FLAGS]
    for command, (function, _) in sorted(COMMANDS.items(), key=lambda c: -len(c[0])):  # `eval fdbench` before `eval`
        if tuple(words[: len(command)]) == command:
            setup_logging(verbose)
            return int(function(words[len(command) :]) or 0)
    parser = _top_parser()
    if words and not words[0].startswith("-"):
        known = sorted({" ".join(c) for c in COMMANDS})
        parser.error(f"unknown command {' '.join(words[:2])!r}; choose one of: {', '.join(known)}")
    parser.parse_args(words)  # --help, or no command: argparse prints the usage and exits
    return 2


if __name__ == "__main__":
    sys.exit(main())
