"""The one `microturn` command: dispatches each subcommand to its function in the `cli` package (one module per
command group: cli/run.py, tools.py, train.py, evals.py, synth.py), which is a thin function over the packages.

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
import sys
from collections.abc import Callable, Sequence

from cli import evals, run, synth, tools, train
from cli.storage import pop_storage_flags

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


def cmd_eval(argv: list[str]) -> int:
    """`microturn eval` (cli/train.py); its --help also names the two-word `eval ...` commands."""
    if any(a in ("-h", "--help") for a in argv):
        parser = train.eval_parser()
        others = [(w, text) for w, (_, text) in COMMANDS.items() if len(w) > 1 and w[0] == "eval"]
        parser.epilog = "other eval commands (each prints its own --help): " + "; ".join(
            f"`microturn {' '.join(w)}`: {text}" for w, text in others
        )
        parser.parse_args(argv)  # prints the help and exits
    return train.cmd_eval(argv)


Command = Callable[[list[str]], int]


def _configure_storage(argv: list[str]) -> list[str]:
    """Take --s3_endpoint_url, --s3_access_key_id, --s3_secret_access_key out of a command's arguments and point
    Beam's FileSystems at them (without them: boto3's AWS_* environment variables); the rest is returned."""
    from schemas.storage import configure

    flags, rest = pop_storage_flags(argv)
    configure(flags)
    return rest


OWN_STORAGE_FLAGS = (("run",), ("validate",), ("demo",))
"""Commands that parse the S3 flags themselves (Beam's options for `run`, argparse for `validate`) or write only
local files (`demo`); every other command's S3 flags are taken out by `_configure_storage` before it parses."""
COMMANDS: dict[tuple[str, ...], tuple[Command, str]] = {
    # command words -> (function over the rest of the command line, in the cli package; help)
    ("run",): (run.cmd_run, "run the pipeline job (see `microturn run --help` for its options)"),
    ("validate",): (tools.cmd_validate, "check a written dataset against the contract; exit 1 on violations"),
    ("demo",): (
        run.cmd_demo,
        "synthesise two-party demo conversations with espeak-ng, run the job on them, validate, and print a summary",
    ),
    ("train",): (train.cmd_train, "train the interaction model on micro-turn shards"),
    ("eval", "behaviour"): (
        evals.cmd_behaviour,
        "score a checkpoint's turn-taking against the dataset's labels, beside baselines",
    ),
    ("eval", "fdbench"): (evals.cmd_fdbench, "Full-Duplex-Bench v1 metrics of response WAVs (energy VAD)"),
    ("eval",): (cmd_eval, "print a checkpoint's per-head losses on held-out shards"),
    ("eval", "proactive"): (evals.cmd_proactive, "score a model's timed words against a dataset's proactive targets"),
    ("eval-align",): (tools.cmd_eval_align, "measure word alignment against known timings"),
    ("respond",): (evals.cmd_respond, "run a checkpoint micro-turn by micro-turn and write its words and audio"),
    ("inspect",): (tools.cmd_inspect, "draw one sample as a PNG (dMel, words, labels, frames)"),
    ("report",): (tools.cmd_report, "write a self-contained HTML report of a dataset"),
    ("split",): (tools.cmd_split, "split a dataset into train/eval, disjoint by conversation and speaker"),
    ("export", "fdbench"): (evals.cmd_export_fdbench, "export held-out clips in Full-Duplex-Bench's layout"),
    ("export", "gander"): (tools.cmd_export_gander, "write a dataset's conversations as Gander JSONL with audio paths"),
    ("import", "gander"): (tools.cmd_import_gander, "convert Gander JSONL conversations to input bundles"),
    ("synth", "agent"): (synth.cmd_agent, "synthesise delegation conversations (tool calls, late results, weaving)"),
    ("synth", "refusals"): (synth.cmd_refusals, "synthesise spoken refusal conversations as input bundles"),
    ("synth", "timed"): (synth.cmd_timed, "synthesise timed-speech conversations (reminders, timers) with targets"),
    ("synth", "cue"): (synth.cmd_cue, "synthesise cue-triggered speech (rule, monologue with cues) with targets"),
    ("synth", "visual"): (synth.cmd_visual, "synthesise counting, start/stop and call-out videos with targets"),
    ("synth", "dialogues"): (
        synth.cmd_dialogues,
        "synthesise two-party conversations with turn-taking cues (or none)",
    ),
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
