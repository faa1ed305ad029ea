"""Does the data teach turn-taking? Synthetic dialogues -> pipeline -> a tiny model -> `eval behaviour`, on CPU.

    PYTHONPATH=. python benchmarks/behaviour_demo.py --out OUT --stage data --cues natural
    PYTHONPATH=. python benchmarks/behaviour_demo.py --out OUT --stage data --cues none
    PYTHONPATH=. python benchmarks/behaviour_demo.py --out OUT --cues natural --user_text none --threads 1 &
    PYTHONPATH=. python benchmarks/behaviour_demo.py --out OUT --cues none --user_text none --threads 1 &
    PYTHONPATH=. python benchmarks/behaviour_demo.py --out OUT --cues natural --user_text heard --threads 1 &
    wait; PYTHONPATH=. python benchmarks/behaviour_demo.py --out OUT --stage report

(or one invocation per run in a row; `--stage all`, the default, makes the data it needs first.)

Data (`--stage data`, cached under OUT/data/<source>-<cues>/ and skipped when its DONE file matches the arguments;
a lock lets side-by-side runs share it): `--train_conversations` conversations of `microturn synth dialogues`
(synth.dialogues.make_dialogues, split "train": training voices and topics) and `--eval_conversations` of its
"heldout" split (voices and topics training never sees), both with `--cues` (`natural`, or `none`: the control, in
which only a silence's length tells a yield from a pause); each set through the pipeline into a dataset.
`--source demo` uses synth.demo instead (5 fixed scripts: for developing this script only, its held-out set
shares every text with training). The training set alone may be varied: `--train_speed_perturb LO,HI` (each
speaker's voice sped up or slowed down) and `--train_dialogue "FLAGS"` (`microturn synth dialogues` recipe flags,
e.g. "--interrupt_p 0.3 --backchannel_p 0.8"); dev and held-out sets keep the default recipe, and both enter the
data's cache key. `--boundary_tones` applies to every set (`synth dialogues --boundary_tones`).

Training (`--stage train`, OUT/runs/<preset>-<cues>-<user_text>/): the preset (`tiny` on CPU; `small` for one GPU,
see benchmarks/behaviour_gpu.sh) without frame patches (no video), `--context` micro-turns per example,
`--user_text` (`none`: the model hears audio only, what behaviour is reported with; `heard`: the ablation that also
feeds the user's words), `--steps` (the cosine schedule's length; `--fit_steps` shortens it to what the cap allows
on this machine, from two short calibration runs) or `--train_minutes` of training, whichever
comes first; the speak head (`--speak_weight 1 --speak_horizon 1` by default; `--speak_weight 0`: none, the model
speaks when its sampled frames are loud) decides when the model speaks, at `--speak_threshold` in evaluation. It
stops at steps/3, 2 steps/3 and steps for the learning curve: the first two points are scored on
the first `--curve_conversations` held-out conversations, the last on all of them (`eval behaviour` rows with
95 % bootstrap CIs, the pause rule swept 200 .. 1,200 ms on the same conversations, always silent, the data);
`--perspectives 2` (default) scores both perspectives of every held-out conversation (each speaker plays the user
once; the bootstrap resamples a conversation's perspectives together): 40 dialogues give about 330 yields and 300
within-turn pauses that way, about half with `--perspectives 1` (one perspective, alternating speakers).
Rerunning with the same --out resumes an unfinished run and skips a finished one. The main run's (`--cues natural
--user_text none`) final checkpoint is copied to OUT/model.pt.

The data audit also runs evals/cue_probe.py once per data set (cached in its audit.json): a linear probe's held-out
AUC for yields vs pauses from the user's last 300 ms of voiced frames, near 0.5 on the control.

The speak threshold of the final evaluation is chosen on `--dev_conversations` (20) more conversations of the
*training* voices and topics, numbered after the training ones (other texts, never trained on; OUT/data/.../dev):
each of `--thresholds` (0.1 .. 0.5) is run there and the best shift/hold balanced accuracy wins; the held-out
set is scored once, at that threshold (the pause rule, for its part, is shown at every N of its sweep).
`--stage retune` redoes that choice and the final evaluation for a finished run; `--stage by_voice` redoes only
the final evaluation, at the threshold chosen before (same seed: the same streams), for runs finished before the
final table was also scored per held-out user voice (`evaluate_behaviour(labels=)`, printed by the report).
`--stop_thresholds` adds hysteresis (trainer.generate's stop threshold: the speak threshold in a micro-turn after
one the model spoke in): after the speak threshold, each is run on dev beside none and the best mean of the three
goal rows wins; `--stage stop` does only that and the final evaluation, at the speak threshold chosen before.

Report (after every run, or `--stage report`): every finished run's learning curve and final table, a summary line
per run against the issue's goals (beyond the median curve with CIs apart and beyond the mean-latency hull with
margins' CIs above 0, shift/hold >= 0.75, interruption stop >= 0.8, backchannel continue >= 0.8 with cues; the
control not beyond), printed and written to OUT/result.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CURVE_ROWS = (
    ("speak_f1", "F1"),
    ("yield_takeover_1s", "yield<=1s"),
    ("yield_median_latency_s", "yield lat"),
    ("yield_mean_latency_s", "mean lat"),
    ("pause_false_takeover", "pause FT"),
    ("shift_hold_bacc", "shift/hold"),
    ("interruption_stop_1s", "int stop"),
    ("backchannel_continue", "bc cont"),
)
GOALS = {"shift_hold_bacc": 0.75, "interruption_stop_1s": 0.8, "backchannel_continue": 0.8}
"""Issue 21's goals for the run with cues (besides lying beyond the pause rule's curve with CIs apart)."""
MAIN_RUN = ("natural", "none")
"""(cues, user_text) of the run whose final checkpoint becomes OUT/model.pt."""


def log(t0: float, msg: str) -> None:
    print(f"[{time.monotonic() - t0:7.0f} s] {msg}", flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (side-by-side invocations make shared data once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def data_dir(out: Path, args: argparse.Namespace) -> Path:
    return out / "data" / f"{args.source}-{args.cues}"


def data_key(args: argparse.Namespace) -> dict[str, Any]:
    from synth.dialogues import RECIPE_VERSION

    key = {k: getattr(args, k) for k in ("source", "cues", "train_conversations", "eval_conversations", "seed")}
    key |= {"recipe_version": RECIPE_VERSION} if args.source == "dialogues" else {}
    perturb = speed_perturb(args)
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in train_dialogue(args).items()}
    return (
        key
        | {"heldout_voices": args.heldout_voices}
        | ({"train_speed_perturb": list(perturb)} if perturb else {})
        | ({"train_dialogue": recipe} if recipe else {})
        | ({"boundary_tones": True} if args.boundary_tones else {})
    )


def speed_perturb(args: argparse.Namespace) -> tuple[float, float] | None:
    """--train_speed_perturb as (lo, hi), or None when off."""
    lo, hi = (float(x) for x in args.train_speed_perturb.split(","))
    return None if (lo, hi) == (1.0, 1.0) else (lo, hi)


def train_dialogue(args: argparse.Namespace) -> dict[str, Any]:
    """--train_dialogue's DialogueConfig fields (only those given; `microturn synth dialogues` flags, e.g.
    "--interrupt_p 0.25 --backchannel_p 0.8") that differ from the default recipe, for the training set only. A
    bad flag exits with argparse's message."""
    from schemas.config_flags import add_flags, flag_values
    from synth.dialogues import DialogueConfig

    parser = argparse.ArgumentParser(prog="--train_dialogue", add_help=False)
    add_flags(parser, DialogueConfig)
    given = flag_values(DialogueConfig, parser.parse_args(shlex.split(args.train_dialogue or "")))
    default = DialogueConfig()
    fields = {k: v for k, v in given.items() if v != getattr(default, k)}
    if "speed_perturb" in fields:
        parser.error("set the speed perturbation with --train_speed_perturb")
    if "boundary_tones" in fields:
        parser.error("boundary tones go to every set: use --boundary_tones")
    return fields


def _demo_bundles(out: Path, n: int, seed: int, split: str) -> int:
    """synth.demo conversations (development only: 5 fixed scripts, so held-out texts repeat training's)."""
    from synth.demo import make_demo_bundles

    tmp = out / f".tmp-{split}"
    made = make_demo_bundles(tmp, count=n, seed=seed + (1000 if split == "heldout" else 0))
    for src in made:  # unique ids across splits
        name = f"demo-{split}-{src.name}"
        dest = out / name
        shutil.move(str(src), dest)
        meta = json.loads((dest / "bundle.json").read_text())
        meta["id"] = name
        (dest / "bundle.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return len(made)


def make_bundles(
    out: Path, n: int, split: str, args: argparse.Namespace, start_index: int = 0, perturb: bool = False
) -> None:
    """`n` conversations of `split` under `out` (numbered from `start_index`), over `--gen_workers` processes;
    `perturb`: with --train_speed_perturb's speed perturbation and --train_dialogue's recipe (the training set
    only)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    holdout = [v for v in args.heldout_voices.split(",") if v] if args.heldout_voices else []
    if args.source == "dialogues":
        from synth.dialogues import DialogueConfig, make_dialogues

        kw: dict[str, Any] = {"split": split, "cues": args.cues, "workers": max(1, args.gen_workers)}
        kw["start_index"] = start_index
        fields = train_dialogue(args) if perturb else {}
        if args.boundary_tones:
            fields["boundary_tones"] = True
        if perturb and speed_perturb(args):
            fields["speed_perturb"] = speed_perturb(args)
        if fields:
            kw["config"] = DialogueConfig(**fields)
        if holdout:
            kw["holdout_voices"] = holdout
        made = len(make_dialogues(out, n, args.seed, **kw))
    else:
        made = _demo_bundles(out, n, args.seed, split)
    if made != n:
        raise RuntimeError(f"{out}: {made} conversations made, {n} asked for")


def _bundle_facts(bundles: Path) -> dict[str, Any]:
    """Voices, topics, conversation texts and chunk texts of a bundle set (from bundle.json and planted.json)."""
    voices, topics, texts, chunks = set(), set(), set(), []
    dirs = sorted(p.parent for p in bundles.glob("*/bundle.json"))
    for d in dirs:
        b = json.loads((d / "bundle.json").read_text())
        synth = b.get("synth") or {}
        voices |= set((synth.get("speaker_voices") or {}).values())
        if synth.get("topic"):
            topics.add(synth["topic"])
        texts.add(" ".join(str(w.get("text", "")) for w in b.get("words") or []))
        planted = d / "planted.json"
        if planted.exists():
            chunks += [c["text"] for c in json.loads(planted.read_text()).get("chunks", []) if c.get("text")]
    return {"conversations": len(dirs), "voices": voices, "topics": topics, "texts": texts, "chunks": chunks}


def audit(d: Path) -> dict[str, Any]:
    """What the held-out set shares with training: voices, topics, whole texts, chunk texts of >= 3 words."""
    train, held = _bundle_facts(d / "bundles" / "train"), _bundle_facts(d / "bundles" / "eval")
    seen = set(train["chunks"])
    long_held = [c for c in held["chunks"] if len(c.split()) >= 3]
    return {
        "train_conversations": train["conversations"],
        "train_distinct_texts": len(train["texts"]),
        "train_voices": sorted(train["voices"]),
        "train_topics": sorted(train["topics"]),
        "heldout_conversations": held["conversations"],
        "heldout_voices": sorted(held["voices"]),
        "heldout_topics": sorted(held["topics"]),
        "shared_voices": sorted(train["voices"] & held["voices"]),
        "shared_topics": sorted(train["topics"] & held["topics"]),
        "heldout_texts_in_train": len(held["texts"] & train["texts"]),
        "train_distinct_chunks": len(seen),
        "heldout_chunks_3plus_words": len(long_held),
        "heldout_chunks_3plus_words_in_train": sum(c in seen for c in long_held),
    }


def cue_audit(d: Path) -> dict[str, Any]:
    """evals.cue_probe on the data: a linear probe on the user's last 300 ms of voiced frames before each silence,
    fitted on the training dataset, telling yields from within-turn pauses on the held-out one (held-out AUC near
    0.5 on the control, above it with cues)."""
    import numpy as np

    from evals.behaviour import reference_of
    from evals.cue_probe import cue_probe
    from evals.respond import conversations_from_dataset

    def load(name: str) -> list[tuple[Any, Any]]:
        convs = conversations_from_dataset(str(d / name))
        return [(np.asarray(c.sample["input.dmel.npy"]), reference_of(c)) for c in convs]

    return cue_probe(load("train"), load("eval"))


def with_cue_audit(d: Path) -> dict[str, Any]:
    """audit.json, the cue probe added once (data cached before the probe existed get it on their next use)."""
    a = json.loads((d / "audit.json").read_text())
    if "cue_probe" not in a:
        a["cue_probe"] = cue_audit(d)
        (d / "audit.json").write_text(json.dumps(a, indent=1))
    return a


def print_audit(a: dict[str, Any]) -> None:
    print(
        f"data audit: train {a['train_conversations']} conversations ({a['train_distinct_texts']} distinct texts, "
        f"{len(a['train_voices'])} voices, {len(a['train_topics'])} topics, {a['train_distinct_chunks']} distinct "
        f"chunks); held-out {a['heldout_conversations']} ({len(a['heldout_voices'])} voices, "
        f"{len(a['heldout_topics'])} topics); shared voices {a['shared_voices'] or 'none'}, shared topics "
        f"{a['shared_topics'] or 'none'}, held-out texts in train {a['heldout_texts_in_train']}, held-out chunks of "
        f">= 3 words seen verbatim in train "
        f"{a['heldout_chunks_3plus_words_in_train']}/{a['heldout_chunks_3plus_words']}",
        flush=True,
    )
    p = a.get("cue_probe")
    if p:
        held = "-" if p["heldout_auc"] is None else f"{p['heldout_auc']:.3f}"
        print(
            f"cue probe (evals/cue_probe.py: yields vs pauses from the user's last {p['frames']} voiced frames, fitted "
            f"on training): held-out AUC {held} over {p['heldout_onsets']} silences (train AUC "
            f"{p['train_auc']:.3f}, {p['train_onsets']} silences; 0.5 = the audio tells nothing)",
            flush=True,
        )


def stage_data(out: Path, args: argparse.Namespace, t0: float) -> Path:
    """Bundles and datasets for --cues, cached: returns OUT/data/<source>-<cues>/."""
    from pipeline.job import run

    d = data_dir(out, args)
    key = data_key(args)
    with locked(out / "data" / f".{d.name}.lock"):
        done = d / "DONE.json"
        if done.exists() and json.loads(done.read_text()) == key:
            log(t0, f"data: cached in {d}")
            stage_dev(d, args, t0)
            print_audit(with_cue_audit(d))
            return d
        if done.exists():
            raise SystemExit(
                f"{d} holds data made with {json.loads(done.read_text())}, not {key}: use another --out or remove it"
            )
        for split, n, name in (
            ("train", args.train_conversations, "train"),
            ("heldout", args.eval_conversations, "eval"),
        ):
            t = time.monotonic()
            make_bundles(d / "bundles" / name, n, split, args, perturb=name == "train")
            log(
                t0, f"data: {n} {split} conversations ({args.source}, cues {args.cues}) in {time.monotonic() - t:.0f} s"
            )
            shutil.rmtree(d / name, ignore_errors=True)
            t = time.monotonic()
            run(["--input", str(d / "bundles" / name), "--output", str(d / name)])
            log(t0, f"data: pipeline -> {d / name} in {time.monotonic() - t:.0f} s")
        (d / "audit.json").write_text(json.dumps(audit(d), indent=1))
        with_cue_audit(d)
        done.write_text(json.dumps(key, indent=1))
        stage_dev(d, args, t0)
    print_audit(json.loads((d / "audit.json").read_text()))
    return d


def stage_dev(d: Path, args: argparse.Namespace, t0: float) -> None:
    """OUT/data/<source>-<cues>/dev: `--dev_conversations` more conversations of the *training* voices and topics
    (numbered after the training ones: other texts), never trained on, where the speak threshold is chosen; made
    once (also for data cached before the dev set existed)."""
    from pipeline.job import run

    done = d / "dev" / "DEV_DONE.json"
    key = {"dev_conversations": args.dev_conversations, "start_index": args.train_conversations}
    if args.source != "dialogues" or args.dev_conversations <= 0:
        return  # synth.demo has 5 scripts: no text a dev set could hold that training lacks
    if done.exists() and json.loads(done.read_text()) == key:
        return
    t = time.monotonic()
    make_bundles(d / "bundles" / "dev", args.dev_conversations, "train", args, start_index=args.train_conversations)
    shutil.rmtree(d / "dev", ignore_errors=True)
    run(["--input", str(d / "bundles" / "dev"), "--output", str(d / "dev")])
    done.write_text(json.dumps(key))
    log(
        t0,
        f"data: {args.dev_conversations} dev conversations (training voices, topics) in {time.monotonic() - t:.0f} s",
    )


def model_file(preset: str) -> str:
    """OUT/model.pt for the tiny preset's main run, OUT/model-<preset>.pt for another preset's."""
    return "model.pt" if preset == "tiny" else f"model-{preset}.pt"


def run_name(args: argparse.Namespace) -> str:
    return f"{args.preset}-{args.cues}-{args.user_text}"


def train_config(args: argparse.Namespace) -> Any:
    from trainer.config import preset

    base = preset(args.preset)
    data = dataclasses.replace(
        base.data,
        frame_patches=0,
        context_microturns=args.context,
        user_text=args.user_text,
        num_workers=args.num_workers,
        augment_channels=args.augment_channels,
        augment_levels=args.augment_levels,
        augment_tilt=args.augment_tilt,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
    )
    optim = dataclasses.replace(base.optim, **({"lr": args.lr} if args.lr else {}))
    loss = dataclasses.replace(
        base.loss, speak_weight=args.speak_weight, speak_horizon=args.speak_horizon, speak_focus=args.speak_focus
    )
    return dataclasses.replace(
        base,
        name=f"behaviour-{run_name(args)}",
        steps=args.steps,
        seed=args.seed,
        log_interval=max(args.steps // 50, 1),
        checkpoint_interval=max(args.steps // 3, 1),
        data=data,
        optim=optim,
        loss=loss,
    )


def eval_conversations(d: Path, args: argparse.Namespace, name: str = "eval") -> list[Any]:
    """The held-out (`name` "eval") or dev ("dev") conversations in id order, one perspective each (alternating)
    or both."""
    from evals.respond import conversations_from_dataset

    convs = conversations_from_dataset(str(d / name))
    by_id: dict[str, list[Any]] = {}
    for c in convs:
        by_id.setdefault(c.conversation_id or c.name, []).append(c)
    out = []
    for i, cid in enumerate(sorted(by_id)):
        views = sorted(by_id[cid], key=lambda c: c.perspective or c.name)
        out += views if args.perspectives == 2 else [views[i % len(views)]]
    return out


def user_voices(d: Path, convs: list[Any], split: str = "eval") -> list[str]:
    """The voice of the user (the speaker not playing the model) of each conversation perspective, read from its
    bundle's synth record (OUT/data/.../bundles/<split>/<id>/bundle.json); "?" where none is recorded."""
    voices = []
    for c in convs:
        path = d / "bundles" / split / (c.conversation_id or c.name) / "bundle.json"
        synth = json.loads(path.read_text()).get("synth") or {} if path.exists() else {}
        others = [v for s, v in (synth.get("speaker_voices") or {}).items() if s != c.perspective]
        voices.append(others[0] if len(others) == 1 else "?")
    return voices


def choose_threshold(model: Any, d: Path, args: argparse.Namespace, t0: float) -> tuple[float, dict[str, Any]]:
    """The speak threshold of the final evaluation, chosen on the dev conversations (training voices and topics,
    never trained on; never the held-out ones): each of `--thresholds` is run there and the one with the best
    shift/hold balanced accuracy wins (ties: the higher threshold). Without dev data or thresholds:
    `--speak_threshold`. Returns (threshold, {"chosen", "dev_perspectives", "rows": [{threshold, metrics}]})."""

    grid = sorted({float(x) for x in args.thresholds.split(",") if x.strip()})
    if not grid or args.dev_conversations <= 0 or not (d / "dev").exists():
        return args.speak_threshold, {"chosen": args.speak_threshold, "rows": [], "dev_perspectives": 0}
    dev = eval_conversations(d, argparse.Namespace(**{**vars(args), "perspectives": 2}), "dev")
    rows = []
    for thr in grid:
        rows.append(_dev_row(model, dev, args, thr, None))
        cells = ", ".join(f"{label} {_cell(rows[-1][k], k)}" for k, label in CURVE_ROWS)
        log(t0, f"{run_name(args)}: dev ({len(dev)} perspectives) at speak threshold {thr:g}: {cells}")
    best = best_threshold(rows)
    log(t0, f"{run_name(args)}: speak threshold {best:g} (best dev shift/hold) for the held-out eval")
    return best, {"chosen": best, "rows": rows, "dev_perspectives": len(dev)}


def _dev_row(model: Any, dev: list[Any], args: argparse.Namespace, threshold: float, stop: float | None) -> dict:
    from evals.behaviour import evaluate_behaviour

    res = evaluate_behaviour(
        model,
        dev,
        pause_ms=args.pause_ms,
        temperature=args.temperature,
        resamples=200,
        speak_threshold=threshold,
        stop_threshold=stop,
        workers=args.threads if args.device == "cpu" else 1,
    )
    m = res["systems"]["model"]
    return {"threshold": threshold, "stop_threshold": stop} | {k: m[k]["value"] for k, _ in CURVE_ROWS}


def goal_mean(row: dict[str, Any]) -> float:
    """The mean of a dev row's three goal rows (GOALS: shift/hold, interruption stop, backchannel continue; a row
    without events counts 0)."""
    return sum(row[k] or 0.0 for k in GOALS) / len(GOALS)


def choose_stop_threshold(
    model: Any, d: Path, args: argparse.Namespace, t0: float, threshold: float, selection: dict[str, Any]
) -> tuple[float | None, dict[str, Any]]:
    """The stop threshold (trainer.generate's hysteresis) of the final evaluation, chosen on the dev conversations
    at the speak threshold chosen before: each of `--stop_thresholds` is run there beside none (the speak threshold
    throughout, the row `choose_threshold` already ran) and the best mean of the three goal rows (`goal_mean`) wins
    (ties: none). Returns (stop threshold or None, `selection` plus "stop_rows" and "stop_chosen")."""
    grid = sorted({float(x) for x in args.stop_thresholds.split(",") if x.strip()} - {threshold})
    if not grid or args.dev_conversations <= 0 or not (d / "dev").exists():
        return None, selection
    dev = eval_conversations(d, argparse.Namespace(**{**vars(args), "perspectives": 2}), "dev")
    base = next((r for r in selection.get("rows", []) if r["threshold"] == threshold), None)
    rows = [{**base, "stop_threshold": None} if base else _dev_row(model, dev, args, threshold, None)]
    for stop in grid:
        rows.append(_dev_row(model, dev, args, threshold, stop))
        cells = ", ".join(f"{label} {_cell(rows[-1][k], k)}" for k, label in CURVE_ROWS)
        log(t0, f"{run_name(args)}: dev ({len(dev)} perspectives) at speak {threshold:g} / stop {stop:g}: {cells}")
    stop_chosen = best_stop(rows)
    log(t0, f"{run_name(args)}: stop threshold {stop_chosen} (best dev mean of the goal rows) for the held-out eval")
    return stop_chosen, selection | {"stop_rows": rows, "stop_chosen": stop_chosen}


def best_stop(rows: list[dict[str, Any]]) -> float | None:
    """The stop threshold of the row with the best `goal_mean` (ties: none, then the lower threshold)."""
    if not rows:
        raise ValueError("no stop-threshold rows to choose from")
    none_first = sorted(rows, key=lambda r: (r["stop_threshold"] is not None, r["stop_threshold"] or 0.0))
    return max(none_first, key=goal_mean)["stop_threshold"]


def _cell(value: float | None, key: str) -> str:
    return "-" if value is None else f"{value:.2f}" if "lat" in key else f"{value:.3f}"


def best_threshold(rows: list[dict[str, Any]]) -> float:
    """The threshold of the row with the highest shift/hold balanced accuracy (None counts lowest; ties: the
    higher threshold, the more cautious model)."""
    if not rows:
        raise ValueError("no threshold rows to choose from")
    best = max(rows, key=lambda r: (-1.0 if r["shift_hold_bacc"] is None else r["shift_hold_bacc"], r["threshold"]))
    return float(best["threshold"])


CALIBRATION_S = (15.0, 45.0)
"""Training seconds of the two scratch runs that measure this machine's pace for --fit_steps: the difference of
their steps over the difference of their wall times is the pace without start-up, which each gives."""
FIT_MARGIN = 0.97
"""Share of the remaining budget the fitted schedule counts on (a machine a little busier than at calibration)."""


def fitted_steps(run_dir: Path, d: Path, args: argparse.Namespace, t0: float) -> int:
    """--fit_steps: the schedule's length that ends within --train_minutes at this machine's pace, at most --steps.

    Two scratch runs of the same configuration train for `CALIBRATION_S` seconds each; from their steps and wall
    times come the pace (steps/s) and the start-up cost (s), paid by each of the run's three segments. The result
    is kept in run_dir/fitted_steps.json, so a resumed run keeps its schedule whatever the machine's pace is then."""
    import torch

    from trainer.train import train

    path = run_dir / "fitted_steps.json"
    key = {"steps": args.steps, "train_minutes": args.train_minutes, "threads": args.threads, "device": args.device}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return int(saved["steps"])
    torch.set_num_threads(args.threads)
    measured: list[tuple[int, float]] = []  # (steps, wall seconds)
    for seconds in CALIBRATION_S:
        scratch = run_dir / "calibration"
        shutil.rmtree(scratch, ignore_errors=True)
        t = time.monotonic()
        train(
            train_config(args), str(d / "train"), str(scratch), device=args.device, progress=False, max_seconds=seconds
        )
        wall = time.monotonic() - t
        measured.append(
            (int(torch.load(scratch / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]), wall)
        )
        shutil.rmtree(scratch, ignore_errors=True)
    (n1, w1), (n2, w2) = measured
    pace = (n2 - n1) / (w2 - w1) if n2 > n1 and w2 > w1 else n2 / w2
    startup = min(max(w1 - n1 / pace, 0.0), w1)
    budget = args.train_minutes * 60.0 - 3 * startup  # three segments (the learning curve's points), each starts up
    steps = max(3, min(args.steps, int(FIT_MARGIN * pace * budget)))
    path.write_text(
        json.dumps({"key": key, "steps": steps, "pace": pace, "startup_s": startup, "calibration": measured})
    )
    log(
        t0,
        f"{run_name(args)}: calibration {n1} and {n2} steps in {w1:.0f} and {w2:.0f} s ({pace:.2f} steps/s, start-up "
        f"{startup:.1f} s): the schedule is {steps} steps (--steps {args.steps}, {args.train_minutes:g} min)",
    )
    return steps


def stage_train(out: Path, d: Path, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    import torch

    from evals.behaviour import evaluate_behaviour, table
    from trainer.checkpoint import load_model
    from trainer.train import train

    run_dir = out / "runs" / run_name(args)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.fit_steps:
        args.steps = fitted_steps(run_dir, d, args, t0)
    cfg = train_config(args)
    volatile = ("stage", "threads", "gen_workers", "out", "dev_conversations", "thresholds", "stop_thresholds")
    settings = {
        "args": {k: v for k, v in vars(args).items() if k not in volatile},
        "config": cfg.to_dict(),
        "data": data_key(args),
    }
    result_path = run_dir / "result.json"
    if result_path.exists():
        old = json.loads(result_path.read_text())
        if old.get("settings") == settings:
            log(t0, f"{run_name(args)}: finished before, {result_path}")
            return old
    convs = eval_conversations(d, args)
    curve_convs = convs[: args.curve_conversations] if args.curve_conversations else convs
    marks = sorted({max(args.steps // 3, 1), max(2 * args.steps // 3, 1), args.steps})
    budget = args.train_minutes * 60.0
    trained, step, curve, final = 0.0, 0, [], None
    metrics = run_dir / "metrics.jsonl"
    progress = run_dir / "progress.json"  # the curve so far, so an interrupted run resumes with it
    if progress.exists() and (run_dir / "checkpoint.pt").exists():
        saved = json.loads(progress.read_text())
        if saved.get("settings") == settings:
            trained, step, curve = saved["train_s"], saved["step"], saved["curve"]
            log(t0, f"{run_name(args)}: resuming at step {step} ({trained:.0f} s trained, {len(curve)} curve points)")
    log(
        t0,
        f"{run_name(args)}: training {args.steps} steps (<= {args.train_minutes:g} min, {args.threads} threads, "
        f"{args.device}); eval on {len(convs)} held-out conversation perspectives "
        f"({len(curve_convs)} for the first two curve points)",
    )
    for i, mark in enumerate(marks):
        last = i == len(marks) - 1
        if i < len(curve) and not last:  # done before an interruption (the final point is always scored here)
            continue
        torch.set_num_threads(args.threads)
        t = time.monotonic()
        # segment i ends at its step mark or at (i + 1) / 3 of the time budget: three curve points either way
        train(
            cfg,
            str(d / "train"),
            str(run_dir),
            device=args.device,
            stop_at=mark,
            progress=False,
            max_seconds=max(budget * (i + 1) / len(marks) - trained, 0.0),
        )
        trained += time.monotonic() - t
        state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
        step = int(state["step"])
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
        loss = next((r["loss"] for r in reversed(lines) if r["step"] <= step), float("nan"))
        if step < mark:
            log(
                t0,
                f"{run_name(args)}: time share {i + 1}/{len(marks)} of {args.train_minutes:g} min spent at step {step}",
            )
        torch.set_num_threads(1 if args.device == "cpu" else args.threads)
        t = time.monotonic()
        model = load_model(str(run_dir / "checkpoint.pt"), args.device)
        threshold, stop = args.speak_threshold, None
        if last:
            threshold, selection = choose_threshold(model, d, args, t0)
            stop, selection = choose_stop_threshold(model, d, args, t0, threshold, selection)
        res = evaluate_behaviour(
            model,
            convs if last else curve_convs,
            pause_ms=args.pause_ms,
            temperature=args.temperature,
            resamples=args.resamples,
            speak_threshold=threshold,
            stop_threshold=stop,
            workers=args.threads if args.device == "cpu" else 1,
            labels=user_voices(d, convs) if last else None,
        )
        res["speak_threshold"], res["stop_threshold"] = threshold, stop
        if last:
            res["threshold_selection"] = selection
        point = {
            "step": step,
            "train_loss": loss,
            "train_s": trained,
            "conversations": res["conversations"],
            "model": res["systems"]["model"],
            "beyond_curve": res.get("beyond_curve"),
            "beyond_hull": res.get("beyond_hull"),
            "speak_decision": res.get("speak_decision"),
            "timing_ms": res["timing_ms"],
        }
        curve[i:] = [point]
        progress.write_text(json.dumps({"settings": settings, "train_s": trained, "step": step, "curve": curve}))
        log(
            t0,
            f"{run_name(args)}: step {step}, loss {loss:.3f}, {trained:.0f} s of training; eval of "
            f"{res['conversations']} perspectives took {time.monotonic() - t:.0f} s",
        )
        if last:
            final = res
    assert final is not None
    result = {
        "settings": settings,
        "run": run_name(args),
        "cues": args.cues,
        "user_text": args.user_text,
        "steps_done": step,
        "train_s": trained,
        "curve": curve,
        "final": final,
        "data_audit": json.loads((d / "audit.json").read_text()),
    }
    result_path.write_text(json.dumps(result, indent=1))
    if (args.cues, args.user_text) == MAIN_RUN:
        shutil.copyfile(run_dir / "checkpoint.pt", out / model_file(args.preset))
    print(f"\n{run_name(args)} final table (step {step}, user text {args.user_text}, cues {args.cues}):")
    print(table(final, systems=final["table_systems"]))
    return result


def stage_retune(out: Path, d: Path, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    """A finished run's final evaluation again, its speak threshold chosen on the dev conversations
    (`choose_threshold`): for runs finished before the threshold was chosen, or with other `--thresholds`. With
    `--stage by_voice`: at the threshold chosen before (no dev run), for the rows per held-out voice."""
    import torch

    from evals.behaviour import evaluate_behaviour, table
    from trainer.checkpoint import load_model

    run_dir = out / "runs" / run_name(args)
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise SystemExit(f"{result_path} does not exist: train the run first (--stage train)")
    result = json.loads(result_path.read_text())
    torch.set_num_threads(1 if args.device == "cpu" else args.threads)
    model = load_model(str(run_dir / "checkpoint.pt"), args.device)
    stop = result["final"].get("stop_threshold")
    if args.stage in ("by_voice", "stop"):  # the threshold chosen before (by_voice: the same streams, per voice)
        threshold, selection = result["final"]["speak_threshold"], result["final"]["threshold_selection"]
    else:
        threshold, selection = choose_threshold(model, d, args, t0)
    if args.stage in ("retune", "stop"):
        stop, selection = choose_stop_threshold(model, d, args, t0, threshold, selection)
    t = time.monotonic()
    convs = eval_conversations(d, args)
    final = evaluate_behaviour(
        model,
        convs,
        pause_ms=args.pause_ms,
        temperature=args.temperature,
        resamples=args.resamples,
        speak_threshold=threshold,
        stop_threshold=stop,
        workers=args.threads if args.device == "cpu" else 1,
        labels=user_voices(d, convs),
    )
    if args.stage == "by_voice":
        same = final["systems"]["model"] == result["final"]["systems"]["model"]
        log(t0, f"{run_name(args)}: held-out rows {'identical to' if same else 'DIFFERENT from'} the stored ones")
    final |= {"speak_threshold": threshold, "stop_threshold": stop, "threshold_selection": selection}
    took = time.monotonic() - t
    log(t0, f"{run_name(args)}: held-out eval of {final['conversations']} perspectives took {took:.0f} s")
    point = result["curve"][-1]
    for key in ("beyond_curve", "beyond_hull", "speak_decision", "timing_ms"):
        point[key] = final.get(key)
    point["model"] = final["systems"]["model"]
    result["final"] = final
    result_path.write_text(json.dumps(result, indent=1))
    print(f"\n{run_name(args)} final table (step {result['steps_done']}, speak threshold {threshold:g}):")
    print(table(final, systems=final["table_systems"]))
    return result


def _v(entry: dict[str, Any] | None, fmt: str = "{:.3f}") -> str:
    if entry is None:
        return "-"
    if entry.get("value") is None:
        return "inf" if entry.get("never") else "-"
    return fmt.format(entry["value"])


def goals(res: dict[str, Any]) -> list[str]:
    """The issue's goals for one run's final result, each 'met' or 'missed by ...'."""
    final = res["final"]
    m, cmp = final["systems"]["model"], final.get("curve_comparison") or {}
    out = []
    hull = final.get("hull_comparison") or {}
    apart = bool(cmp.get("beyond_curve")) and not cmp.get("ci_overlap", True)
    hull_apart = bool(hull.get("beyond_ci"))
    if res["cues"] == "none":
        if cmp.get("beyond_curve") and hull.get("beyond"):
            verdict = "BEYOND the median curve AND the mean-latency hull: something leaks, find it"
        elif cmp.get("beyond_curve"):
            verdict = "beyond the median curve only (a chance policy can be; not beyond the mean-latency hull): ok"
        else:
            verdict = "not beyond: ok"
        return [f"control: {verdict}"]
    lat, ft = cmp.get("latency_margin_s", {}), cmp.get("false_takeover_margin", {})
    out.append(
        f"beyond the median curve with CIs apart: {'met' if apart else 'missed'} (margins rule - model: latency "
        f"{_v(lat, '{:+.2f}')} s, false take-over {_v(ft, '{:+.3f}')}; CIs overlap: {cmp.get('ci_overlap')})"
    )
    h_lat, h_ft = hull.get("latency_margin_s", {}), hull.get("false_takeover_margin", {})
    out.append(
        f"beyond the mean-latency hull with margins' CIs above 0: {'met' if hull_apart else 'missed'} (margins: "
        f"latency {_v(h_lat, '{:+.2f}')} s, false take-over {_v(h_ft, '{:+.3f}')}; point beyond: {hull.get('beyond')})"
    )
    for key, goal in GOALS.items():
        v = m[key]["value"]
        if v is None:
            out.append(f"{key} >= {goal}: no events")
        else:
            out.append(f"{key} >= {goal}: " + ("met" if v >= goal else f"missed by {goal - v:.3f}") + f" ({v:.3f})")
    return out


def _auc(decision: dict[str, Any] | None) -> str:
    """The speak head's yields-vs-pauses AUC at silence starts (evals.behaviour.speak_decision), or '-'."""
    if not decision or decision.get("auc") is None:
        return "-"
    return f"{decision['auc']:.3f} ({decision['yields']}/{decision['pauses']})"


def print_by_voice(final: dict[str, Any]) -> None:
    """The final table's model rows per held-out user voice (espeak-ng es-*, flite fl-*, festival fe-*), with CIs
    over that voice's conversations."""
    by = final.get("by_label")
    if not by:
        return
    keys = ("shift_hold_bacc", "interruption_stop_1s", "backchannel_continue", "pause_false_takeover")
    print("  per held-out user voice: " + ", ".join(keys) + " (value [95% CI] n), beyond the curve")
    for voice, row in by.items():
        cells = []
        for k in keys:
            e = row["model"][k]
            lo, hi = e["ci95"] if e.get("ci95") else (None, None)
            ci = "" if lo is None or hi is None else f" [{lo:.2f},{hi:.2f}]"
            cells.append(f"{_v(e)}{ci} n={e['n']}")
        print(f"    {voice:12s} ({row['conversations']:2d}): " + "; ".join(cells) + f"; {row['beyond_curve']}")


def report(out: Path) -> dict[str, Any]:
    from evals.behaviour import table

    runs = {}
    for path in sorted((out / "runs").glob("*/result.json")):
        res = json.loads(path.read_text())
        runs[res["run"]] = res
    for name, res in runs.items():
        print(
            f"\n=== {name}: learning curve ({res['curve'][-1]['conversations']} held-out perspectives at the end) ==="
        )
        print(
            f"{'step':>6s}{'loss':>8s}{'convs':>6s}"
            + "".join(f"{label:>11s}" for _, label in CURVE_ROWS)
            + "  beyond  hull   head AUC"
        )
        for p in res["curve"]:
            cells = "".join(f"{_v(p['model'][k], '{:.2f}' if 'lat' in k else '{:.3f}'):>11s}" for k, _ in CURVE_ROWS)
            print(
                f"{p['step']:>6d}{p['train_loss']:>8.3f}{p['conversations']:>6d}{cells}  "
                f"{str(p['beyond_curve']):6s}  {str(p.get('beyond_hull')):5s}  {_auc(p.get('speak_decision'))}"
            )
        final = res["final"]
        data = out / "data" / f"{res['settings']['data']['source']}-{res['cues']}" / "audit.json"
        a = json.loads(data.read_text()) if data.exists() else res.get("data_audit")  # the probe may be newer
        if a:
            print_audit(a)
        print(f"final table (step {res['steps_done']}, {res['train_s'] / 60:.1f} min of training):")
        print(table(final, systems=final["table_systems"]))
        t = final["timing_ms"]
        print(f"model wall time per micro-turn: median {t['median']:.1f} ms, p95 {t['p95']:.1f} ms")
        sel = final.get("threshold_selection") or {}
        for row in sel.get("rows", []):
            cells = ", ".join(f"{label} {_cell(row[k], k)}" for k, label in CURVE_ROWS)
            print(f"  dev ({sel['dev_perspectives']} perspectives), speak threshold {row['threshold']:g}: {cells}")
        if "speak_threshold" in final:
            how = "chosen on dev (best shift/hold)" if sel.get("rows") else "fixed"
            print(f"  speak threshold of this table: {final['speak_threshold']:g} ({how})")
        for row in sel.get("stop_rows", []):
            cells = ", ".join(f"{label} {_cell(row[k], k)}" for k, label in CURVE_ROWS)
            mean = goal_mean(row)
            print(f"  dev, speak {row['threshold']:g} / stop {row['stop_threshold']}: {cells} (goal mean {mean:.3f})")
        if sel.get("stop_rows"):
            print(f"  stop threshold of this table: {final.get('stop_threshold')} (chosen on dev: best goal mean)")
        print_by_voice(final)
        for line in goals(res):
            print("  goal: " + line)
    if runs:
        print("\n=== summary (final checkpoints) ===")
        print(f"{'run':28s}" + "".join(f"{label:>11s}" for _, label in CURVE_ROWS) + "  beyond  CIs apart  hull")
        for name, res in runs.items():
            m = res["final"]["systems"]["model"]
            cmp = res["final"].get("curve_comparison") or {}
            cells = "".join(f"{_v(m[k], '{:.2f}' if 'lat' in k else '{:.3f}'):>11s}" for k, _ in CURVE_ROWS)
            apart = bool(cmp.get("beyond_curve")) and not cmp.get("ci_overlap", True)
            hull = res["final"].get("hull_comparison") or {}
            print(f"{name:28s}{cells}  {str(cmp.get('beyond_curve')):6s}  {str(apart):9s}  {hull.get('beyond')}")
    summary = {"runs": runs, "goals": {name: goals(res) for name, res in runs.items()}}
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    models = [str(out / m) for m in sorted(p.name for p in out.glob("model*.pt"))]
    print(f"\n{out / 'result.json'}" + (f"; final checkpoints of the main runs: {', '.join(models)}" if models else ""))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="behaviour-demo-out", help="work directory (data, runs, result.json, model.pt)")
    p.add_argument(
        "--stage",
        choices=("all", "data", "train", "retune", "by_voice", "stop", "report"),
        default="all",
        help="what to do (default all)",
    )
    p.add_argument("--source", choices=("dialogues", "demo"), default="dialogues", help="synth.dialogues or synth.demo")
    p.add_argument("--cues", choices=("natural", "none"), default="natural", help="natural cues, or the control")
    p.add_argument("--user_text", choices=("none", "heard"), default="none", help="user words fed as text (ablation)")
    p.add_argument("--train_conversations", type=int, default=300, help="training conversations (default 300)")
    p.add_argument("--eval_conversations", type=int, default=40, help="held-out conversations (default 40)")
    p.add_argument(
        "--heldout_voices", default="", help="comma-separated voices training never hears (default: synth's)"
    )
    p.add_argument(
        "--train_speed_perturb",
        default="1,1",
        help="LO,HI: speed-perturb each training speaker by a factor drawn in [LO, HI] (DialogueConfig.speed_perturb; "
        "pitch, formants and tempo together) to widen the training voices; dev and held-out sets are never "
        "perturbed (default 1,1: off)",
    )
    p.add_argument(
        "--train_dialogue",
        default="",
        help='`microturn synth dialogues` recipe flags for the training set only, in one string (e.g. "--interrupt_p '
        '0.25 --backchannel_p 0.8": more of the events the goals are about); dev and held-out sets keep the default '
        "recipe (default: none)",
    )
    p.add_argument(
        "--boundary_tones",
        action="store_true",
        help="every set (training, dev, held-out) with `synth dialogues --boundary_tones`: flite's and festival's "
        "clauses end with their punctuation's pitch movement (default: off, as those engines speak)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and order (default 0)")
    p.add_argument("--gen_workers", type=int, default=2, help="processes generating conversations (default 2)")
    p.add_argument("--preset", choices=("tiny", "small"), default="tiny", help="model preset (default tiny)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps of the schedule (default 3000)")
    p.add_argument("--train_minutes", type=float, default=30.0, help="training time cap, minutes (default 30)")
    p.add_argument(
        "--fit_steps",
        action="store_true",
        help="shorten the schedule to what --train_minutes allows on this machine (two calibration runs of 15 and "
        "45 s measure its pace and start-up; at most --steps), so that a slow machine finishes its cosine schedule "
        "instead of being cut while the learning rate is high (default: off, --steps as given)",
    )
    p.add_argument("--context", type=int, default=8, help="micro-turns per training example (default 8 = 1.6 s)")
    p.add_argument("--batch_size", type=int, default=0, help="examples per step (default: the preset's)")
    p.add_argument(
        "--speak_weight",
        type=float,
        default=1.0,
        help="weight of the speak head's loss (trainer LossConfig.speak_weight; 0 = no head, the model speaks when "
        "its sampled frames are loud) (default 1)",
    )
    p.add_argument(
        "--speak_horizon",
        type=int,
        default=1,
        help="the speak head's target looks this many micro-turns ahead (LossConfig.speak_horizon; default 1: "
        "speaks now or in the next 200 ms)",
    )
    p.add_argument(
        "--speak_threshold",
        type=float,
        default=0.5,
        help="the speak head's decision threshold (silent below it) at the learning curve's first points, and at "
        "the end when no threshold is chosen on dev conversations (default 0.5)",
    )
    p.add_argument(
        "--thresholds",
        default="0.1,0.15,0.2,0.3,0.5",
        help="speak thresholds tried on the dev conversations after training; the best shift/hold one scores the "
        "held-out set ('' = --speak_threshold; default 0.1,0.15,0.2,0.3,0.5)",
    )
    p.add_argument(
        "--stop_thresholds",
        default="",
        help="stop thresholds (hysteresis: the speak threshold after a micro-turn the model spoke in) tried on the dev "
        "conversations after the speak threshold is chosen, beside none; the best mean of the three goal rows scores "
        "the held-out set ('' = none, the default; e.g. 0.1,0.3,0.5)",
    )
    p.add_argument(
        "--dev_conversations",
        type=int,
        default=20,
        help="conversations of the training voices and topics, never trained on, that choose the threshold "
        "(default 20; 0 = none)",
    )
    p.add_argument(
        "--speak_focus",
        type=float,
        default=1.0,
        help="weight of the speak loss where the floor may change, relative to elsewhere (LossConfig.speak_focus; "
        "default 1)",
    )
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: the preset's)")
    for name, what in (
        ("channels", "shift along the mel axis of up to +- N channels"),
        ("levels", "gain of up to +- N levels (6 dB each)"),
        ("tilt", "spectral tilt of up to +- N levels"),
    ):
        p.add_argument(
            f"--augment_{name}",
            type=int,
            default=0,
            metavar="N",
            help=f"training only: the heard dMel of each example varied by a {what} (DataConfig.augment_{name}, "
            "trainer/augment.py; default 0: off)",
        )
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads for training; CPU eval runs this many 1-thread processes"
    )
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes in training (default 0)")
    p.add_argument(
        "--perspectives",
        type=int,
        choices=(1, 2),
        default=2,
        help="perspectives scored per held-out conversation (default 2: both speakers play the user in turn)",
    )
    p.add_argument(
        "--curve_conversations", type=int, default=12, help="held-out perspectives for the first two curve points"
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature in eval (default 1)")
    p.add_argument("--pause_ms", type=float, default=600.0, help="the pause rule in the main table (default 600)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.runner.logs import quiet_beam_notices

    quiet_beam_notices()  # before anything imports Beam: its optional-dependency notices are not for this output
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"--device {args.device}: no CUDA device here (run on the GPU machine, or --device cpu)")
            return 2
    t0 = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.stage == "report":
        report(out)
        return 0
    d = stage_data(out, args, t0)
    if args.stage == "data":
        return 0
    if args.stage in ("retune", "by_voice", "stop"):
        stage_retune(out, d, args, t0)
        report(out)
        return 0
    stage_train(out, d, args, t0)
    if args.stage == "all":
        report(out)
    log(t0, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
