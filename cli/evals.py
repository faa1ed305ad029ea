"""Running and scoring a model (evals/): `microturn respond | eval behaviour | eval fdbench | eval proactive |
export fdbench`.

    microturn respond --checkpoint runs/tiny/checkpoint.pt --input demo-out/dataset --out responses
    microturn eval behaviour --checkpoint runs/tiny/checkpoint.pt --data demo-out/dataset
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from cli.flags import add_flags, flag_values
from cli.tools import add_split_arguments


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `microturn train`")


def respond_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="microturn respond",
        description="Run a checkpoint micro-turn by micro-turn "
        "over conversations and write its words, speak/silent decisions and audio.",
    )
    _model_flags(p)
    p.add_argument(
        "--input", required=True, help="dataset directory, bundles directory, or `microturn export fdbench` directory"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy (default 1)")
    p.add_argument("--top_k", type=int, default=0, help="sample among the k most likely classes; 0 = all")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (conversation i uses seed + i)")
    p.add_argument("--max_conversations", type=int, default=0, help="stop after this many (default 0 = all)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the ops are small)")
    return p


def cmd_respond(argv: list[str]) -> int:
    """`microturn respond`: generate and write the model side of every input conversation; returns 0."""
    import os

    import torch

    from evals.respond import load_inputs, write_outputs
    from trainer.checkpoint import load_model
    from trainer.generate import iter_generated, timing_summary

    args = respond_parser().parse_args(list(argv))
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint, args.device)
    convs = load_inputs(args.input, limit=args.max_conversations)
    if not convs:
        print(f"microturn respond: no conversations in {args.input}")
        return 2
    os.makedirs(args.out, exist_ok=True)
    all_seconds: list[float] = []
    for conv, gen in iter_generated(model, convs, temperature=args.temperature, top_k=args.top_k, seed=args.seed):
        info = write_outputs(conv, gen, args.out, seed=args.seed)
        all_seconds += gen.seconds
        med, p95 = timing_summary(gen.seconds)
        print(
            f"{conv.name}: {conv.microturns} micro-turns, {info['words']} words, speaks in "
            f"{info['speak_share']:.0%} of micro-turns, {med:.1f} ms median -> {info['folder']}"
        )
    med, p95 = timing_summary(all_seconds)
    verdict = "real time" if p95 < 200 else "NOT real time"
    print(
        f"wall time per micro-turn on {args.device} ({torch.get_num_threads()} threads): median {med:.1f} ms, "
        f"p95 {p95:.1f} ms over {len(all_seconds)} micro-turns ({verdict}: a micro-turn is 200 ms)"
    )
    return 0


def behaviour_parser() -> argparse.ArgumentParser:
    from evals.behaviour import MIN_PAUSE_MS

    p = argparse.ArgumentParser(
        prog="microturn eval behaviour",
        description="Run a checkpoint in real time over "
        "held-out conversations and score when it speaks, beside always-silent and "
        "pause-rule baselines (rows: see evals/behaviour.py).",
    )
    _model_flags(p)
    p.add_argument("--data", required=True, help="dataset directory (manifest.json + shards)")
    p.add_argument("--split", default=None, help="split.json from `microturn split`: only its eval conversations")
    p.add_argument(
        "--pause_ms",
        type=float,
        default=600.0,
        help="the pause rule shown in the main table, ms of user silence (default 600; the whole sweep 200..1200 ms "
        "is always scored)",
    )
    p.add_argument(
        "--min_pause_ms",
        type=float,
        default=MIN_PAUSE_MS,
        help=f"shortest user pause scored, ms (default {MIN_PAUSE_MS:g}; `export fdbench` uses 800)",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples over conversations (default 1000)")
    p.add_argument("--bootstrap_seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("--top_k", type=int, default=0, help="top-k sampling; 0 = all classes")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max_conversations", type=int, default=0, help="at most this many (default 0 = all)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the conversations on the CPU, one thread each; the same streams as 1 (default 1)",
    )
    p.add_argument(
        "--speak_threshold",
        type=float,
        default=0.5,
        help="a checkpoint with a speak head stays silent in a micro-turn where its probability of speaking is below "
        "this (default 0.5)",
    )
    p.add_argument(
        "--stop_threshold",
        type=float,
        default=None,
        help="the same threshold in a micro-turn after one the model spoke in (hysteresis: lower keeps a talking "
        "model talking through dips, higher makes it yield sooner; default: --speak_threshold)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def cmd_behaviour(argv: list[str]) -> int:
    """`microturn eval behaviour`: print the behaviour table of a checkpoint and the baselines; returns 0."""
    import torch

    from evals.behaviour import evaluate_behaviour, table
    from evals.respond import load_inputs
    from pipeline.tools.split import load_split
    from trainer.checkpoint import load_model

    args = behaviour_parser().parse_args(list(argv))
    if args.workers > 1 and args.device != "cpu":
        print("microturn eval behaviour: --workers > 1 runs on the CPU only; use --workers 1 with --device cuda")
        return 2
    torch.set_num_threads(args.threads)
    keep = set(load_split(args.split)["eval"]["conversations"]) if args.split else None
    convs = load_inputs(args.data, limit=args.max_conversations, keep=keep)
    if not convs:
        print(f"microturn eval behaviour: no conversations in {args.data}" + (f" for {args.split}" if keep else ""))
        return 2
    if any("labels.npy" not in c.sample for c in convs):
        print("microturn eval behaviour: --data must be a dataset (labels.npy per sample)")
        return 2
    model = load_model(args.checkpoint, args.device)
    result = evaluate_behaviour(
        model,
        convs,
        pause_ms=args.pause_ms,
        min_pause_ms=args.min_pause_ms,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        resamples=args.resamples,
        bootstrap_seed=args.bootstrap_seed,
        speak_threshold=args.speak_threshold,
        stop_threshold=args.stop_threshold,
        workers=args.workers,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['conversations']} conversation perspectives of {args.data}; user text: {result['user_text']}")
    print(table(result, systems=result["table_systems"]))
    rate = result["data_backchannels_per_min"]
    print("data's own backchannels / min of user speech (labels): " + ("-" if rate is None else f"{rate:.2f}"))
    t = result["timing_ms"]
    print(f"model wall time per micro-turn: median {t['median']:.1f} ms, p95 {t['p95']:.1f} ms")
    return 0


def cmd_fdbench(argv: list[str]) -> int:
    """`microturn eval fdbench`: print Full-Duplex-Bench v1 take-over rates and latencies; returns 0."""
    from evals.fdbench_score import evaluate_fdbench, render

    p = argparse.ArgumentParser(
        prog="microturn eval fdbench",
        description="Full-Duplex-Bench v1 take-over rate "
        "and latency of response WAVs (pause handling, smooth turn-taking, user "
        "interruption), energy VAD (see evals/fdbench_score.py).",
    )
    p.add_argument("--clips", required=True, help="directory written by `microturn export fdbench`")
    p.add_argument("--responses", required=True, help="directory of {v1/task/clip}/output.wav responses")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(list(argv))
    result = evaluate_fdbench(args.clips, args.responses)
    if not result:
        print(f"microturn eval fdbench: no v1 pause_handling / smooth_turn_taking / user_interruption in {args.clips}")
        return 2
    print(json.dumps(result) if args.json else render(result))
    return 0


def cmd_proactive(argv: list[str]) -> int:
    """`microturn eval proactive ...`: prints the scores as JSON; 2 on unreadable input."""
    from evals import proactive

    p = argparse.ArgumentParser(prog="microturn eval proactive", description=proactive.__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a dataset the job wrote, or a directory of input bundles")
    p.add_argument("--responses", required=True, help="JSONL of {conversation_id, words} or a directory of <id>.json")
    p.add_argument(
        "--silence_floor",
        type=float,
        default=0.5,
        help="call-out score of correct silence and of a hit at the window end, 0..1 (default %(default)s)",
    )
    p.add_argument("--out", default=None, help="also write the scores to this JSON file")
    args = p.parse_args(argv)
    try:
        result = proactive.score(
            proactive.load_conversations(args.data),
            proactive.load_responses(args.responses),
            silence_floor=args.silence_floor,
        )
    except (ValueError, OSError, KeyError, TypeError, UnicodeDecodeError) as e:
        print(f"microturn eval proactive: error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


def export_fdbench_parser() -> argparse.ArgumentParser:
    from evals.fdbench_export import ExportConfig

    parser = argparse.ArgumentParser(
        prog="microturn export fdbench",
        description="Export evaluation clips of held-out conversations in Full-Duplex-Bench's layout (v1.0 "
        "backchannel, pause handling, smooth turn-taking, user interruption; v1.5 user interruption, user "
        "backchannel, and for conversations of more than two parties talking_to_other and background_speech). "
        "The dataset must have been written with --keep_audio. A dataset of one conversation, or any with --all, "
        "is exported whole.",
    )
    parser.add_argument("dataset", help="dataset directory written with --keep_audio")
    parser.add_argument("--out", required=True, help="output directory for the clip folders")
    parser.add_argument(
        "--split",
        default=None,
        help="split.json from `microturn split`; without it the split is computed with the options "
        "below and saved as OUT/split.json",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="export every conversation (a dedicated evaluation set): no held-out split; split.json then has an "
        "empty train side",
    )
    add_split_arguments(parser)
    add_flags(parser, ExportConfig)
    return parser


def choose_split(args: argparse.Namespace) -> tuple[dict, str]:
    """The split to export and how it was chosen, for the summary line."""
    from evals.fdbench_export import whole_dataset_split
    from pipeline.tools.split import load_split, split_dataset

    if args.split and args.all:
        raise ValueError("--split and --all exclude each other")
    if args.split:
        return load_split(args.split), "held-out"
    if args.all:
        return whole_dataset_split(args.dataset), "all (--all: no held-out split)"
    whole = whole_dataset_split(args.dataset)
    if len(whole["eval"]["conversations"]) == 1:
        return whole, "all (the dataset has one conversation: nothing to hold out from)"
    try:
        split = split_dataset(
            args.dataset, eval_fraction=args.eval_fraction, seed=args.seed, speaker_scope=args.speaker_scope
        )
    except ValueError as e:
        raise ValueError(f"{e}; or pass --all to export every conversation (a dedicated evaluation set)") from e
    return split, "held-out"


def cmd_export_fdbench(argv: list[str]) -> int:
    """`microturn export fdbench`: write the clips and print how many per task; 2 on a bad split or configuration."""
    from evals.fdbench_export import ExportConfig, export_fdbench

    args = export_fdbench_parser().parse_args(list(argv))
    try:
        split, chosen = choose_split(args)
        config = ExportConfig(**flag_values(ExportConfig, args))
        rows = export_fdbench(args.dataset, args.out, split=split, config=config)
    except ValueError as e:
        print(f"microturn export fdbench: error: {e}", file=sys.stderr)
        return 2
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["dir"].rsplit("/", 1)[0]] += 1
    print(
        f"{len(rows)} clips from {len(split['eval']['conversations'])} conversations, {chosen}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    print(f"wrote {args.out}")
    return 0
