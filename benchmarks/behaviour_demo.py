"""Behaviour at CPU scale: demo conversations -> pipeline -> train a tiny model -> `eval behaviour` at 3 checkpoints.

    PYTHONPATH=. python benchmarks/behaviour_demo.py --out /tmp/behaviour-demo

Steps: synthesise `--conversations` espeak conversations (synth.demo.make_demo_bundles) spread over `--seeds`, each
renamed `s{seed}-demo-NNNN`; every 5th conversation is held out (no conversation is in both); the pipeline writes a
train and an eval dataset; the `tiny` preset without frame patches (the demo has no video) and with
`--context` micro-turns per example trains for `--steps` optimiser steps (the cosine schedule's length) or until
`--train_minutes` are spent, whichever comes first, stopping at steps/3, 2 steps/3 and steps to run
evals.behaviour on `--eval_conversations` held-out conversation perspectives. It prints the learning curve (train
loss and the behaviour rows per checkpoint) and the final table with the always-silent and pause-rule baselines,
and writes OUT/result.json. Everything lives under --out (checkpoints included): nothing goes into git. The
defaults keep the whole run under 30 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CURVE_ROWS = (
    "speak_f1",
    "yield_takeover_1s",
    "yield_median_latency_s",
    "pause_handling",
    "interruption_stop_1s",
    "backchannels_per_min",
)


def make_bundles(out: Path, conversations: int, seeds: list[int]) -> tuple[Path, Path]:
    """Demo bundles under out/train and out/eval (every 5th conversation held out); returns both directories."""
    from synth.demo import make_demo_bundles

    train, held = out / "train", out / "eval"
    for d in (train, held):
        d.mkdir(parents=True, exist_ok=True)
    per_seed = [conversations // len(seeds) + (i < conversations % len(seeds)) for i in range(len(seeds))]
    i = 0
    for seed, count in zip(seeds, per_seed, strict=True):
        if count == 0:
            continue
        tmp = out / f"tmp-seed{seed}"
        for src in make_demo_bundles(tmp, count=count, seed=seed):
            name = f"s{seed}-{src.name}"
            dest = (held if i % 5 == 0 else train) / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.move(str(src), dest)
            meta = json.loads((dest / "bundle.json").read_text())
            meta["id"] = name
            (dest / "bundle.json").write_text(json.dumps(meta, indent=1))
            i += 1
        shutil.rmtree(tmp, ignore_errors=True)
    return train, held


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="behaviour-demo-out", help="work directory (bundles, datasets, run)")
    p.add_argument("--conversations", type=int, default=30, help="demo conversations in all (default 30)")
    p.add_argument("--seeds", default="0,1,2", help="generator seeds, comma-separated (default 0,1,2)")
    p.add_argument("--steps", type=int, default=600, help="optimiser steps of the schedule (default 600)")
    p.add_argument("--train_minutes", type=float, default=15.0, help="training time budget (default 15)")
    p.add_argument("--context", type=int, default=8, help="micro-turns per training example (default 8 = 1.6 s)")
    p.add_argument("--eval_conversations", type=int, default=4, help="held-out perspectives scored (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature in eval (default 1)")
    p.add_argument("--pause_ms", type=float, default=600.0, help="pause rule baseline (default 600)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training (eval uses 1)")
    args = p.parse_args(argv)

    import torch

    from evals.behaviour import evaluate_behaviour, table
    from evals.respond import conversations_from_dataset
    from pipeline.job import run
    from trainer.checkpoint import load_model
    from trainer.config import preset
    from trainer.train import train

    t_start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    print(
        f"[{time.monotonic() - t_start:6.0f} s] synthesising {args.conversations} conversations (seeds {seeds})",
        flush=True,
    )
    train_b, eval_b = make_bundles(out / "bundles", args.conversations, seeds)
    for name, src in (("train", train_b), ("eval", eval_b)):
        shutil.rmtree(out / name, ignore_errors=True)
        run(["--input", str(src), "--output", str(out / name)])
    print(f"[{time.monotonic() - t_start:6.0f} s] datasets written: {out / 'train'}, {out / 'eval'}", flush=True)

    base = preset("tiny")
    cfg = dataclasses.replace(
        base,
        name="behaviour-demo",
        steps=args.steps,
        log_interval=10,
        checkpoint_interval=max(args.steps // 3, 1),
        data=dataclasses.replace(base.data, frame_patches=0, context_microturns=args.context),
    )
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    convs = conversations_from_dataset(str(out / "eval"), limit=args.eval_conversations)
    budget = args.train_minutes * 60.0
    trained = 0.0  # seconds spent training (evaluation not counted)
    curve, step, loss = [], 0, float("nan")
    marks = sorted({max(args.steps // 3, 1), max(2 * args.steps // 3, 1), args.steps})
    while True:
        target = next(m for m in marks if m > step)
        stop = min(step + 25, target)  # short segments, so the time budget is kept within a segment too
        torch.set_num_threads(args.threads)
        t0 = time.monotonic()
        records = train(cfg, str(out / "train"), str(run_dir), device="cpu", stop_at=stop, progress=False)
        trained += time.monotonic() - t0
        step = records[-1]["step"] if records else stop
        loss = records[-1]["loss"] if records else loss
        out_of_time = trained > budget
        if step != target and not out_of_time:
            continue
        torch.set_num_threads(1)
        t_eval = time.monotonic()
        model = load_model(str(run_dir / "checkpoint.pt"))
        result = evaluate_behaviour(model, convs, pause_ms=args.pause_ms, temperature=args.temperature)
        curve.append(
            {
                "step": step,
                "train_loss": loss,
                "train_s": trained,
                "model": result["systems"]["model"],
                "timing_ms": result["timing_ms"],
            }
        )
        print(
            f"[{time.monotonic() - t_start:6.0f} s] step {step}: loss {loss:.3f}; {trained:.0f} s of training; "
            f"eval took {time.monotonic() - t_eval:.0f} s",
            flush=True,
        )
        if step >= args.steps:
            break
        if out_of_time:
            print(f"training budget of {args.train_minutes} min spent at step {step}: stopping here")
            break

    print(f"\nlearning curve ({len(convs)} held-out conversation perspectives, temperature {args.temperature}):")
    print(f"{'step':>6s}{'loss':>8s}" + "".join(f"{r:>24s}" for r in CURVE_ROWS))
    for c in curve:
        cells = "".join("{:>24s}".format("-" if c["model"][r] is None else f"{c['model'][r]:.3f}") for r in CURVE_ROWS)
        print(f"{c['step']:>6d}{c['train_loss']:>8.3f}" + cells)
    print(f"\nfinal table (step {curve[-1]['step']}):")
    print(table(result["systems"], data_rate=result["data_backchannels_per_min"]))
    t = result["timing_ms"]
    print(f"model wall time per micro-turn: median {t['median']:.1f} ms, p95 {t['p95']:.1f} ms (1 thread)")
    worse = [r for r in CURVE_ROWS if r != "yield_median_latency_s" and _worse(result["systems"], r)]
    print("rows where the model does not beat always silent: " + (", ".join(worse) if worse else "none"))
    with open(out / "result.json", "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "curve": curve, "final": result}, f, indent=1)
    print(f"total {time.monotonic() - t_start:.0f} s; {out / 'result.json'}")
    return 0


def _worse(systems: dict, row: str) -> bool:
    """Whether the model fails to beat always-silent on a row (higher is better for every CURVE_ROWS row but
    latency; a row always silent cannot be scored on counts as beaten when the model has a value)."""
    m, s = systems["model"][row], systems["always silent"][row]
    if m is None:
        return True
    return s is not None and m <= s


if __name__ == "__main__":
    sys.exit(main())
