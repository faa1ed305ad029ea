"""Dataset tools: `microturn validate | inspect | report | split | export gander | import gander | eval-align`.

microturn validate DATASET
microturn report DATASET --out report.html
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from cli.flags import add_flags, flag_values
from cli.storage import add_storage_args, configure_from_args


def cmd_validate(argv: list[str]) -> int:
    """`microturn validate`: check a dataset (a directory or an s3:// prefix) against the contract; exit 1 on
    violations."""
    from schemas.validate import validate

    parser = argparse.ArgumentParser(
        prog="microturn validate", description="check a written dataset against the contract; exit 1 on violations"
    )
    parser.add_argument("dataset", help="dataset directory or s3:// prefix (the job's --output)")
    parser.add_argument("--limit", type=int, default=20, help="how many violations to print (default 20)")
    add_storage_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args)
    report = validate(args.dataset, limit=args.limit)
    print(report.render())
    return 0 if report.ok else 1


def cmd_inspect(argv: list[str]) -> int:
    """`microturn inspect`: draw one sample as a PNG; 2 when the sample is not found."""
    from pipeline.tools.inspect import SampleNotFound, load_sample, render_sample

    parser = argparse.ArgumentParser(
        prog="microturn inspect",
        description="Draw one sample as a PNG: both streams' dMel on a shared time axis with the 200 ms grid, "
        "words at their times, speech activity and interaction labels as coloured bands, video "
        "thumbnails when the sample has frames.",
    )
    parser.add_argument("dataset", help="dataset directory (the job's --output)")
    parser.add_argument("key", help="sample key, '{conversation}_{window:05d}' (see the index)")
    parser.add_argument(
        "--perspective",
        default=None,
        help="the speaker playing the model, as in the index's perspective column (default: the window's first)",
    )
    parser.add_argument("--out", required=True, help="path of the PNG file to write")
    parser.add_argument("--width_px", type=int, default=3000, help="picture width in pixels (default 3000)")
    parser.add_argument("--height_px", type=int, default=1400, help="picture height in pixels (default 1400)")
    parser.add_argument("--dpi", type=int, default=100, help="dots per inch: font scale (default 100)")
    parser.add_argument(
        "--start_s", type=float, default=None, help="seconds from the window start where the picture begins (default 0)"
    )
    parser.add_argument(
        "--end_s",
        type=float,
        default=None,
        help="seconds from the window start where the picture ends (default: the window's end)",
    )
    args = parser.parse_args(list(argv))
    try:
        sample = load_sample(args.dataset, args.key, args.perspective)
    except SampleNotFound as e:
        print(f"microturn inspect: error: {e.args[0]}", file=sys.stderr)
        return 2
    render_sample(
        sample,
        args.out,
        width_px=args.width_px,
        height_px=args.height_px,
        dpi=args.dpi,
        start_s=args.start_s,
        end_s=args.end_s,
    )
    print(f"wrote {args.out} ({args.width_px} x {args.height_px} px)")
    return 0


def cmd_report(argv: list[str]) -> int:
    """`microturn report`: write the HTML report of a dataset (and a second one to compare with)."""
    from pipeline.tools.report import format_value, write_report

    parser = argparse.ArgumentParser(
        prog="microturn report",
        description="Write a self-contained HTML report of a dataset (no network resources): hours, "
        "conversations, samples, perspectives, sources and licences, rejected inputs by stage and kind, and "
        "turn-taking distributions on 200 ms bins; with --compare, two datasets side by side with the "
        "Jensen-Shannon divergence of each distribution.",
    )
    parser.add_argument("dataset", help="dataset directory (the job's --output)")
    parser.add_argument("--compare", default=None, help="a second dataset directory to compare with")
    parser.add_argument("--out", required=True, help="path of the HTML file to write")
    args = parser.parse_args(list(argv))
    result = write_report(args.dataset, args.out, compare=args.compare)
    s = result["summaries"][0]
    print(f"{args.dataset}: {s['hours']:.4f} h, {s['conversations']} conversations, {s['samples']} samples")
    if result["jsd"]:
        print("Jensen-Shannon divergences: " + ", ".join(f"{k} {format_value(v)}" for k, v in result["jsd"].items()))
    print(f"wrote {args.out}")
    return 0


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `split_dataset` (`microturn split`, `microturn export fdbench`)."""
    from pipeline.tools.split import SPEAKER_SCOPES

    parser.add_argument(
        "--eval_fraction",
        type=float,
        default=0.1,
        help="share of conversation hours (0..1) that goes to evaluation (default 0.1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the stable hash that orders groups (default 0)")
    parser.add_argument(
        "--speaker_scope",
        choices=SPEAKER_SCOPES,
        default="global",
        help="global: equal speaker ids in different conversations are the same person; "
        "conversation: speaker ids are labels inside one recording (default global)",
    )


def cmd_split(argv: list[str]) -> int:
    """`microturn split`: write split.json; 2 when the dataset cannot be split so."""
    from pipeline.tools.split import split_dataset

    parser = argparse.ArgumentParser(
        prog="microturn split",
        description="Split a dataset into train and evaluation, disjoint by conversation and by speaker; "
        "writes split.json with the conversations, speakers, sample keys and hours of each side.",
    )
    parser.add_argument("dataset", help="dataset directory (the job's --output)")
    parser.add_argument("--out", required=True, help="path of the split JSON file to write")
    add_split_arguments(parser)
    args = parser.parse_args(list(argv))
    try:
        obj = split_dataset(
            args.dataset, eval_fraction=args.eval_fraction, seed=args.seed, speaker_scope=args.speaker_scope
        )
    except ValueError as e:
        print(f"microturn split: error: {e}", file=sys.stderr)
        return 2
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    for side in ("train", "eval"):
        s = obj[side]
        print(
            f"{side:5s}: {len(s['conversations'])} conversations, {len(s['speakers'])} speakers, "
            f"{len(s['keys'])} samples, {s['hours']:.4f} h"
        )
    print(f"wrote {args.out}")
    return 0


def cmd_export_gander(argv: list[str]) -> int:
    """`microturn export gander`: a dataset's conversations as Gander JSONL."""
    from pipeline.tools.gander_export import export_gander

    parser = argparse.ArgumentParser(
        prog="microturn export gander",
        description="Write a dataset's conversations as Gander JSONL (turns, audio paths, tool calls, deliveries).",
    )
    parser.add_argument("dataset", help="dataset directory (made with --keep_audio for audio paths)")
    parser.add_argument("--out", required=True, help="the JSONL file; WAVs go to audio/ next to it")
    parser.add_argument("--text_only", action="store_true", help="no audio: turns without audio_in / speech_out")
    args = parser.parse_args(list(argv))
    try:
        n = export_gander(args.dataset, args.out, text_only=args.text_only)
    except ValueError as e:
        print(f"microturn export gander: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} conversations to {args.out}")
    return 0


def cmd_import_gander(argv: list[str]) -> int:
    """`microturn import gander FILE.jsonl --out BUNDLES_DIR`."""
    from synth import gander_import

    parser = argparse.ArgumentParser(prog="microturn import gander", description=gander_import.__doc__.split("\n\n")[0])
    parser.add_argument("input", help="Gander JSONL file (one conversation per line)")
    parser.add_argument("--out", required=True, help="directory for the bundles")
    parser.add_argument(
        "--allow_outside_paths",
        action="store_true",
        help="read audio files outside the Gander file's directory (default: refused, as the job refuses them)",
    )
    args = parser.parse_args(argv)
    rejected: list[tuple[str, str]] = []
    written = gander_import.import_gander(
        args.input, args.out, allow_outside=args.allow_outside_paths, rejected=rejected
    )
    for origin, reason in rejected:
        print(f"rejected {origin}: {reason}", file=sys.stderr)
    print(
        f"wrote {len(written)} bundles to {args.out}, rejected {len(rejected)} lines; "
        f"next: microturn run --input {args.out} --output DATASET"
    )
    return 0 if written or not rejected else 2


def eval_align_parser() -> argparse.ArgumentParser:
    from pipeline import aligners
    from pipeline.align import AlignConfig
    from pipeline.tools import eval_align

    parser = argparse.ArgumentParser(prog="microturn eval-align", description=eval_align.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input",
        default=None,
        help="bundles with true word times (`microturn eval-align` without it first writes --count "
        "demo conversations to a temporary directory and measures on those)",
    )
    parser.add_argument(
        "--count", type=int, default=2, help="demo conversations to write when --input is not given (default 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="demo generator seed, without --input (default 0)")
    parser.add_argument(
        "--connected",
        action="store_true",
        help="without --input: measure on --count connected-speech conversations (synth.connected: whole "
        "sentences) instead of the word-by-word demo",
    )
    parser.add_argument(
        "--dialogues",
        type=int,
        default=0,
        metavar="N",
        help="without --input: measure on `synth dialogues` conversations in which each of the 19 voices speaks "
        "in N conversations at each rate of --rates (ceil(19 N / 2) conversations a rate), and print the figures "
        "per voice, per rate and per word class",
    )
    parser.add_argument(
        "--rates",
        type=lambda t: [float(x) for x in t.split(",") if x],
        default=[0.8, 1.0, 1.25],
        metavar="F,F,...",
        help="with --dialogues: speaking-rate factors (espeak-ng words per minute times F, flite and festival "
        "duration stretch over F; default 0.8,1.0,1.25)",
    )
    parser.add_argument(
        "--dialogue_s",
        type=lambda t: tuple(float(x) for x in t.split(",")),
        default=(14.0, 18.0),
        metavar="LO,HI",
        help="with --dialogues: each conversation's length target in seconds (default 14,18)",
    )
    parser.add_argument(
        "--mode",
        choices=("text", "flat", "audio", "both"),
        default="both",
        help="text: align known text given a line per turn, as transcripts give it; flat: the same text as one "
        "line per speaker (no turn breaks); audio: transcribe and align; both (default): text and audio",
    )
    aligners.add_aligner_args(parser)
    add_flags(parser, AlignConfig, names=("refine_boundaries",))
    return parser


def cmd_eval_align(argv: list[str]) -> int:
    """`microturn eval-align`: without --input, first writes --count demo bundles (seed --seed) to a temporary
    directory, as `microturn demo` does, and measures on those; with --connected, the connected-speech truth set
    of synth.connected (whole espeak-ng sentences, true word starts from espeak-ng's word events) instead; with
    --dialogues N, `synth dialogues` conversations cast by `synth.dialogues.rate_casts` (every voice, every rate)."""
    from pipeline.aligners import aligner_config
    from synth.connected import make_connected_bundles
    from synth.demo import make_demo_bundles

    parser = eval_align_parser()
    args = parser.parse_args(argv)
    config = aligner_config(args)
    if config.backend == "none":
        parser.error("choose a backend with --aligner (pocketsphinx, faster-whisper or whisperx)")
    if args.input is not None:
        return _eval_align(args, config, args.input)
    make_bundles = make_connected_bundles if args.connected else make_demo_bundles
    with tempfile.TemporaryDirectory(prefix="microturn-eval-align-") as tmp:
        if args.dialogues:
            from synth.dialogues import DialogueConfig, make_dialogues, rate_casts

            casts = rate_casts(args.dialogues, args.rates, seed=args.seed)
            dialogue_config = DialogueConfig(duration_s=args.dialogue_s)
            make_dialogues(tmp, len(casts), args.seed, config=dialogue_config, casts=casts, workers=os.cpu_count() or 1)
        else:
            make_bundles(tmp, count=args.count, seed=args.seed)
        return _eval_align(args, config, tmp)


def _eval_align(args: argparse.Namespace, config: Any, inputs: str) -> int:
    """Measure the aligner of `config` on the bundles in `inputs`, print one report per --mode; the exit status."""
    from pipeline.align import AlignConfig
    from pipeline.aligners import load_backend
    from pipeline.tools.eval_align import GOALS, class_table, evaluate, group_table, load_measurable

    try:
        convs = load_measurable(inputs)
    except ValueError as e:  # no such path / no inputs there
        print(f"microturn eval-align: error: {e}", file=sys.stderr)
        return 2
    if not convs:
        print("microturn eval-align: error: no input could be measured (see the rejections above)", file=sys.stderr)
        return 2
    backend = load_backend(config)
    assert backend is not None
    align_config = AlignConfig(**flag_values(AlignConfig, args, names=("refine_boundaries",)))
    modes = ("text", "audio") if args.mode == "both" else (args.mode,)
    for mode in modes:
        if mode == "audio" and not config.whisper_model:
            print(f"eval-align  mode=audio  backend={backend.name}: skipped (transcription needs --whisper_model)")
            continue
        report = evaluate(convs, backend, mode=mode, config=align_config)
        print(report.render())
        if any(w.voice != "-" for w in report.words):  # synth dialogues: who spoke each word is known
            print(
                f"per voice (goals: <= {100 * GOALS['unplaced']:g} % unplaced, p95 start <= "
                f"{GOALS['start_p95_ms']:g} ms, >= {100 * GOALS['same_microturn']:g} % same micro-turn, "
                f"{100 * GOALS['within_one_microturn']:g} % within one)"
            )
            print(group_table(report.words, "voice"))
            if len({w.rate for w in report.words}) > 1:
                print("per speaking-rate factor")
                print(group_table(report.words, "rate"))
            print("per word class (a word has several)")
            print(class_table(report.words))
    return 0
