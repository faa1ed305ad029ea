"""The one `microturn` command; each subcommand is a thin function over the packages.

    microturn --help

`-v`/`--verbose` may stand before or after the subcommand (`microturn -v report ...`, `microturn report -v ...`).
Logging is configured here, once, for every subcommand: our packages log INFO (rank 0 only under torchrun), other
libraries WARNING (INFO with -v), the job's line per conversation only with -v, Beam's optional-dependency notices
never (pipeline/runner/logs.py); each line carries the torchrun rank (RANK, 0 without torchrun). Flags are spelled
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
    from pipeline.runner.logs import CONVERSATIONS, VERBOSE_ENV, quiet_beam_notices

    quiet_beam_notices()  # before anything imports Beam
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"  # for the local runner's worker processes
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger(CONVERSATIONS).setLevel(logging.INFO if verbose and rank == 0 else logging.WARNING)


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
        _run_help()
        return 0
    start = time.monotonic()
    argv = ["--no_progress" if a == "--no-progress" else a for a in argv]  # the trainer's spelling, accepted here too
    argv = _gander_input(argv)
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
    elapsed_s = time.monotonic() - start
    speed = f" ({manifest['hours'] * 3600 / elapsed_s:.0f}x real time)" if manifest["hours"] > 0 else ""
    print(f"done in {elapsed_s:.1f} s{speed}")
    failed = nothing_written(manifest, output)
    if failed:
        print(f"microturn run: {failed}", file=sys.stderr)
    return 1 if failed else 0


def _gander_input(argv: list[str]) -> list[str]:
    """`--input FILE.jsonl` of Gander conversations: import them into OUTPUT/_gander_bundles first (synth may
    synthesise missing assistant speech; the pipeline itself never imports synth) and run on those bundles."""
    from pipeline.runner.output_guard import GANDER_BUNDLES
    from synth.gander_import import import_gander, is_gander_file

    def value(flag: str) -> tuple[int, str] | None:
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return i + 1, argv[i + 1]
            if a.startswith(flag + "="):
                return i, a.split("=", 1)[1]
        return None

    found, output = value("--input"), value("--output")
    if found is None or output is None or not found[1].endswith(".jsonl") or not os.path.isfile(found[1]):
        return argv
    if not is_gander_file(found[1]):
        return argv
    if "://" in output[1]:  # os.path.join would make a local directory named "s3:/bucket/..."
        raise ValueError(
            f"--input {found[1]} is a Gander file, whose conversations are imported as bundles into the output "
            f"first, and --output {output[1]} is not a local directory: run `microturn import gander {found[1]} "
            "--out BUNDLES` and then `microturn run --input BUNDLES ...` (BUNDLES on storage the workers read)"
        )
    bundles = os.path.join(output[1], GANDER_BUNDLES)
    import_gander(found[1], bundles)
    print(f"Gander input: {found[1]} imported as bundles into {bundles}")
    out = list(argv)
    out[found[0]] = bundles if out[found[0]] == found[1] else f"--input={bundles}"
    # the conversations' audio paths are the Gander file's (relative to its directory): allowed there too
    return [*out, "--extra_input_root", os.path.dirname(os.path.abspath(found[1]))]


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
    """`microturn validate`: check a dataset (a directory or an s3:// prefix) against the contract; exit 1 on
    violations."""
    from schemas.storage import add_storage_args, configure_from_args
    from schemas.validate import validate

    parser = argparse.ArgumentParser(prog="microturn validate", description=COMMANDS[("validate",)][1])
    parser.add_argument("dataset", help="dataset directory or s3:// prefix (the job's --output)")
    parser.add_argument("--limit", type=int, default=20, help="how many violations to print (default 20)")
    add_storage_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args)
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
        from pipeline.runner.output_guard import is_our_output

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
    from evals.behaviour import eval_behaviour_main

    return eval_behaviour_main(argv)


def cmd_eval_fdbench(argv: list[str]) -> int:
    from evals.fdbench_score import eval_fdbench_main

    return eval_fdbench_main(argv)


def cmd_respond(argv: list[str]) -> int:
    from evals.respond import respond_main

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
    from evals.fdbench_export import export_fdbench_main

    return export_fdbench_main(argv)


def cmd_export_gander(argv: list[str]) -> int:
    from pipeline.tools.gander_export import export_gander_main

    return export_gander_main(argv)


def cmd_import_gander(argv: list[str]) -> int:
    from synth.gander_import import import_gander_main

    return import_gander_main(argv)


def cmd_synth_agent(argv: list[str]) -> int:
    from synth.agent import agent_main

    return agent_main(argv)


def cmd_synth_refusals(argv: list[str]) -> int:
    from synth.refusals import refusals_main

    return refusals_main(argv)


def cmd_synth_timed(argv: list[str]) -> int:
    from synth.timed import timed_main

    return timed_main(argv)


def cmd_synth_cue(argv: list[str]) -> int:
    from synth.cue import cue_main

    return cue_main(argv)


def cmd_synth_visual(argv: list[str]) -> int:
    from synth.visual import visual_main

    return visual_main(argv)


def cmd_synth_dialogues(argv: list[str]) -> int:
    from synth.dialogues import dialogues_main

    return dialogues_main(argv)


def cmd_eval_proactive(argv: list[str]) -> int:
    from evals.proactive import proactive_eval_main

    return proactive_eval_main(argv)


def cmd_eval_align(argv: list[str]) -> int:
    """`microturn eval-align`: without --input, first writes --count demo bundles (seed --seed) to a temporary
    directory, as `microturn demo` does, and measures on those; with --connected, the connected-speech truth set
    of synth.connected (whole espeak-ng sentences, true word starts from espeak-ng's word events) instead; with
    --dialogues N, `synth dialogues` conversations cast by `synth.dialogues.rate_casts` (every voice, every rate)."""
    from pipeline.tools.eval_align import build_parser, eval_align_main
    from synth.connected import make_connected_bundles
    from synth.demo import make_demo_bundles

    args, _ = build_parser().parse_known_args(argv)  # -h/--help prints eval-align's help and exits here
    if args.input is not None:
        return eval_align_main(argv)
    make_bundles = make_connected_bundles if args.connected else make_demo_bundles
    with tempfile.TemporaryDirectory(prefix="microturn-eval-align-") as tmp:
        if args.dialogues:
            from synth.dialogues import DialogueConfig, make_dialogues, rate_casts

            casts = rate_casts(args.dialogues, args.rates, seed=args.seed)
            config = DialogueConfig(duration_s=args.dialogue_s)
            make_dialogues(tmp, len(casts), args.seed, config=config, casts=casts, workers=os.cpu_count() or 1)
        else:
            make_bundles(tmp, count=args.count, seed=args.seed)
        return eval_align_main([*argv, "--input", tmp])


Command = Callable[[list[str]], int]


def _configure_storage(argv: list[str]) -> list[str]:
    """Take --s3_endpoint_url, --s3_access_key_id, --s3_secret_access_key out of a command's arguments and point
    Beam's FileSystems at them (without them: boto3's AWS_* environment variables); the rest is returned."""
    from schemas.storage import configure, pop_storage_flags

    flags, rest = pop_storage_flags(argv)
    configure(flags)
    return rest


OWN_STORAGE_FLAGS = (("run",), ("validate",), ("demo",))
"""Commands that parse the S3 flags themselves (Beam's options for `run`, argparse for `validate`) or write only
local files (`demo`); every other command's S3 flags are taken out by `_configure_storage` before it parses."""
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
    ("eval", "proactive"): (cmd_eval_proactive, "score a model's timed words against a dataset's proactive targets"),
    ("eval-align",): (cmd_eval_align, "measure word alignment against known timings"),
    ("respond",): (cmd_respond, "run a checkpoint micro-turn by micro-turn and write its words and audio"),
    ("inspect",): (cmd_inspect, "draw one sample as a PNG (dMel, words, labels, frames)"),
    ("report",): (cmd_report, "write a self-contained HTML report of a dataset"),
    ("split",): (cmd_split, "split a dataset into train/eval, disjoint by conversation and speaker"),
    ("export", "fdbench"): (cmd_export_fdbench, "export held-out clips in Full-Duplex-Bench's layout"),
    ("export", "gander"): (cmd_export_gander, "write a dataset's conversations as Gander JSONL with audio paths"),
    ("import", "gander"): (cmd_import_gander, "convert Gander JSONL conversations to input bundles"),
    ("synth", "agent"): (cmd_synth_agent, "synthesise delegation conversations (tool calls, late results, weaving)"),
    ("synth", "refusals"): (cmd_synth_refusals, "synthesise spoken refusal conversations as input bundles"),
    ("synth", "timed"): (cmd_synth_timed, "synthesise timed-speech conversations (reminders, timers) with targets"),
    ("synth", "cue"): (cmd_synth_cue, "synthesise cue-triggered speech (rule, monologue with cues) with targets"),
    ("synth", "visual"): (cmd_synth_visual, "synthesise counting, start/stop and call-out videos with targets"),
    ("synth", "dialogues"): (cmd_synth_dialogues, "synthesise two-party conversations with turn-taking cues (or none)"),
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


def _call(command: tuple[str, ...], function: Command, argv: list[str], verbose: bool) -> int:
    """Run one command (its S3 flags configured first, see OWN_STORAGE_FLAGS); a missing or unusable path (OSError)
    or a bad value (ValueError) that the command did not turn into its own message becomes one line
    ``microturn NAME: error: ...`` and exit 2 (the traceback with -v)."""
    name = " ".join(command)
    try:
        if command not in OWN_STORAGE_FLAGS:
            argv = _configure_storage(argv)
        return int(function(argv) or 0)
    except (OSError, ValueError) as e:
        if verbose:
            logger.exception("microturn %s failed", name)
        print(f"microturn {name}: error: {e}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv`; returns its exit status. Called as the process's command (`argv` None: the
    `microturn` script, ``python -m microturn_cli``) it ends the process itself, see `_exit_process`."""
    if argv is not None:
        return _main(argv)
    try:
        status = _main(None)
    except SystemExit as e:  # argparse's errors and --help
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    _exit_process(status)
    return status  # not reached


def _exit_process(status: int) -> None:
    """End the process with `status` once the command's output is flushed, without the interpreter's teardown.

    pyarrow (every command reads or writes Parquet) keeps native threads (its CPU and I/O pools, jemalloc's
    background thread) alive to the end; when the interpreter is torn down while one of them still runs, libstdc++
    aborts with "terminate called without an active exception" and the process exits 134 after its work is done
    (apache/arrow#34314). Every file a command writes is closed when it returns, so nothing is lost by skipping
    the teardown."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        logging.shutdown()
        os._exit(status)


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in VERBOSE_FLAGS for a in argv)
    words = [a for a in argv if a not in VERBOSE_FLAGS]
    for command, (function, _) in sorted(COMMANDS.items(), key=lambda item: -len(item[0])):
        # longest match first: `eval proactive` before `eval`
        if tuple(words[: len(command)]) == command:
            setup_logging(verbose)
            return _call(command, function, words[len(command) :], verbose)
    parser = _top_parser()
    groups = {w: [" ".join(c) for c in COMMANDS if c[0] == w] for w in {c[0] for c in COMMANDS if len(c) > 1}}
    if words and words[0] in groups and all(a.startswith("-") for a in words[1:]):
        # `microturn export`, `microturn synth --help`: list the group's subcommands
        text = f"usage: microturn {words[0]} SUBCOMMAND ...; subcommands: {', '.join(groups[words[0]])}"
        if any(a in ("-h", "--help") for a in words[1:]):
            print(text)
            return 0
        print(f"{text}\nmicroturn {words[0]}: error: unknown or missing subcommand", file=sys.stderr)
        return 2
    if words and not words[0].startswith("-"):
        known = sorted({" ".join(c) for c in COMMANDS})
        parser.error(f"unknown command {' '.join(words[:2])!r}; choose one of: {', '.join(known)}")
    parser.parse_args(words)  # --help, or no command: argparse prints the usage and exits
    return 2


if __name__ == "__main__":
    sys.exit(main())
