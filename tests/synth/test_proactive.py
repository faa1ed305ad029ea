"""Proactive generators end to end: synth timed / cue / visual -> bundles with targets -> the Beam job -> shards.

Per family a planted case is checked in the shards (the target's due micro-turn is the micro-turn of the model
word spoken at it; its window starts where the rule says), the generators are byte-deterministic, and the scorer
gives the truth 100 % and shifted or swapped truth what its rules say.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evals.proactive import load_conversations, load_responses, score
from schemas.reader import iter_samples
from schemas.tables import read_index_rows
from schemas.validate import validate
from synth.cue import CueConfig, make_cue
from synth.proactive import generate
from synth.timed import TimedConfig, make_timed
from synth.visual import DEFAULT_CLIPS, VisualConfig, make_visual

HAVE_CLIPS = DEFAULT_CLIPS.is_dir() and any(DEFAULT_CLIPS.glob("*.mp4"))
"""The CC BY clips of ../shared/fixtures/videos: without them the visual family has no `count_clip` task."""

W = 50  # 10 s windows, so targets cross window boundaries
MAKERS = {
    "timed": lambda: make_timed(TimedConfig(min_wait_s=5, max_wait_s=5, min_period_s=3, max_period_s=3)),
    "cue": lambda: make_cue(CueConfig(min_monologue_s=10, max_monologue_s=12)),
    "visual": lambda: make_visual(VisualConfig(min_reps=3, max_reps=3, min_period_s=0.8, max_period_s=1.2)),
}
COUNTS = {"timed": 4, "cue": 3, "visual": 6}
SEEDS = {"timed": 0, "cue": 0, "visual": 3}  # seeds whose first examples draw every task of the family


@pytest.fixture(scope="module")
def family_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per family: bundles under <root>/out and the job's dataset under <root>/dataset."""
    from pipeline.job import run

    roots = {}
    for family, maker in MAKERS.items():
        root = tmp_path_factory.mktemp(family)
        generate(family, maker(), root / "out", seed=SEEDS[family], count=COUNTS[family])
        run(
            ["--input", str(root / "out" / "bundles"), "--output", str(root / "dataset"), "--window_microturns", str(W)]
        )
        roots[family] = root
    return roots


def _bundles(root: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((root / "out").glob("bundles/*/bundle.json"))
    }


def _shard_targets(root: Path) -> dict[tuple[str, str], list[tuple[dict, dict]]]:
    """(conversation id, target id) -> [(sample target, sample)] over every window."""
    out: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for sample in iter_samples(str(root / "dataset")):
        for t in sample.get("targets.json", []):
            out.setdefault((sample["meta.json"]["conversation_id"], t["id"]), []).append((t, sample))
    return out


@pytest.mark.parametrize("family", list(MAKERS))
def test_every_target_reaches_the_shards_at_its_model_word(family: str, family_data: dict[str, Path]) -> None:
    root = family_data[family]
    assert validate(str(root / "dataset")).ok
    bundles = _bundles(root)
    placed = _shard_targets(root)
    n_targets = 0
    for conv_id, b in bundles.items():
        for t in b["targets"]:
            n_targets += 1
            model_word = next(w for w in b["words"] if w["speaker"] == "model" and abs(w["start"] - t["due"]) < 1e-6)
            assert model_word["text"] == t["text"].split()[0]
            windows = placed[(conv_id, t["id"])]
            due_mt = int(round(t["due"] * 16000)) // 3200
            first_mt, end_mt = int(round(t["start"] * 16000)) // 3200, math.ceil(round(t["end"] * 16000) / 3200)
            seen_due = False
            for st, sample in windows:
                a = sample["meta.json"]["start_microturn"]
                n = sample["meta.json"]["num_microturns"]
                assert st["start_microturn"] == min(max(first_mt - a, 0), n)
                assert st["end_microturn"] == min(max(end_mt - a, 0), n)
                assert abs(st["due_s"] + a * 0.2 - t["due"]) < 1e-5
                if st["due_microturn"] is not None:
                    seen_due = True
                    assert st["due_microturn"] == due_mt - a
                    words = [
                        w for w in sample["words.json"] if w["stream"] == "output" and w["text"] == model_word["text"]
                    ]
                    assert st["due_microturn"] in {w["microturn"] for w in words}
            assert seen_due
    assert n_targets >= COUNTS[family]
    rows = read_index_rows(str(root / "dataset"))
    assert sum(r["n_targets"] for r in rows) >= n_targets  # a target crossing windows counts in each
    assert {c for r in rows for c in r["target_categories"]} == {
        t["category"] for b in bundles.values() for t in b["targets"]
    }


def test_timed_planted_case(family_data: dict[str, Path]) -> None:
    """One-shot N = 5: due 5 s after the request's last word; periodic K = 3: targets 3 s apart, none after stop."""
    tasks = set()
    for b in _bundles(family_data["timed"]).values():
        task = b["tags"]["task"]
        tasks.add(task)
        user = [w for w in b["words"] if w["speaker"] == "user"]
        if task == "oneshot":
            (t,) = b["targets"]
            request_end = next(w["end"] for w in user if w["text"] == "passed")
            assert t["text"] == "5 seconds have passed" and abs(t["due"] - request_end - 5.0) < 1e-6
            assert abs(t["start"] - (t["due"] - 0.2)) < 1e-6 and abs(t["end"] - (t["due"] + 1.0)) < 1e-6
        elif task == "periodic":
            dues = [t["due"] for t in b["targets"]]
            assert np.allclose(np.diff(dues), 3.0)
            stop = [w["start"] for w in user if w["text"] == "stop"][-1]
            assert max(dues) < stop
    assert "oneshot" in tasks and "periodic" in tasks


def test_cue_planted_case(family_data: dict[str, Path]) -> None:
    """The window opens where the cue word ends; the answer is the rule applied to the cue."""
    checked = 0
    for b in _bundles(family_data["cue"]).values():
        user = [w for w in b["words"] if w["speaker"] == "user"]
        for t in b["targets"]:
            cue = next(w for w in user if abs(w["end"] - t["start"]) < 1e-6)
            rule = b["tags"]["rule"]
            if rule == "currency":
                i = user.index(cue)
                assert cue["text"] == "euros"
                assert t["text"] == f"{int(user[i - 1]['text']) * float(b['tags']['rate']):g} dollars"
            elif rule == "colour":
                from synth.cue import FRUITS

                assert t["text"] == FRUITS[cue["text"]]
            else:
                from synth.cue import SPANISH

                assert t["text"] == SPANISH[cue["text"]]
            checked += 1
    assert checked


def _frame(sample: dict, k: int) -> np.ndarray:
    return sample["frames"][k].astype(np.float32)


NEEDS_CLIPS = pytest.mark.skipif(
    not HAVE_CLIPS, reason="the seed's visual task mix includes a fixture clip: needs ../shared/fixtures/videos"
)


@NEEDS_CLIPS
def test_visual_planted_case(family_data: dict[str, Path]) -> None:
    """start/stop: the frames are still before the start's window and move after it; counting: counts 1..N at the
    cycle ends; a clip where nothing appears has no target."""
    root = family_data["visual"]
    bundles = _bundles(root)
    tasks = {b["tags"]["task"] for b in bundles.values()}
    assert tasks == {"startstop", "count_shape", "count_clip", "appear", "absent"}, tasks
    for b in bundles.values():
        if b["tags"]["task"].startswith("count"):
            assert [t["count"] for t in b["targets"]] == [1, 2, 3]
            assert all(abs(t["start"] - t["cycle_end"]) < 1e-6 for t in b["targets"])
        if b["tags"]["task"] == "absent":
            assert b["targets"] == [] and b["tags"]["callout"] == "red square"
    for windows in _shard_targets(root).values():
        st, sample = windows[0]
        if st["category"] != "visual_start" or st["start_microturn"] < 3:
            continue
        k = st["start_microturn"]  # contains the motion's start: frames up to k - 1 show the resting square
        assert np.abs(_frame(sample, k - 1) - _frame(sample, 0)).mean() < 1.0
        assert np.abs(_frame(sample, k + 2) - _frame(sample, 0)).mean() > 1.0


@pytest.mark.parametrize("family", list(MAKERS))
def test_generators_are_deterministic(family: str, family_data: dict[str, Path], tmp_path: Path) -> None:
    generate(family, MAKERS[family](), tmp_path / "again", seed=SEEDS[family], count=COUNTS[family])
    first = {
        p.relative_to(family_data[family] / "out"): p.read_bytes()
        for p in (family_data[family] / "out").rglob("*")
        if p.is_file()
    }
    again = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*") if p.is_file()}
    assert first.keys() == again.keys() and first == again


def _shifted(responses: dict, by_s: float) -> dict:
    return {c: [{**w, "start": w["start"] + by_s, "end": w["end"] + by_s} for w in ws] for c, ws in responses.items()}


def _swapped(responses: dict, table: dict[str, str]) -> dict:
    return {c: [{**w, "text": table.get(w["text"], w["text"])} for w in ws] for c, ws in responses.items()}


@pytest.mark.parametrize("family", list(MAKERS))
def test_scorer_truth_shift_and_swap(family: str, family_data: dict[str, Path]) -> None:
    root = family_data[family]
    convs = dict(load_conversations(str(root / "dataset")))
    from_bundles = dict(load_conversations(str(root / "out" / "bundles")))
    assert {c: (v.tags, {i: replace(t, speaker=None) for i, t in v.targets.items()}) for c, v in convs.items()} == {
        c: (v.tags, v.targets) for c, v in from_bundles.items()
    }  # shards (where the model speaker is filled in) and bundles agree
    truth = load_responses(str(root / "out" / "truth.jsonl"))
    exact = score(convs, truth)
    assert all(c["accuracy"] == 1.0 for c in exact["categories"].values())
    late = score(convs, _shifted(truth, 2.0))  # 2 s late: outside every window (b = 1 s)
    assert all(c["accuracy"] == 0.0 for c in late["categories"].values())
    if family in ("timed", "cue"):
        assert exact["families"][family]["macro_accuracy"] == 1.0
        assert late["families"][family]["macro_accuracy"] == 0.0
        words = {w["text"] for ws in truth.values() for w in ws}
        swapped = score(convs, _swapped(truth, dict.fromkeys(words - {"okay"}, "banana")))
        assert swapped["families"][family]["macro_accuracy"] == 0.0
        return
    assert exact["counting"]["clips"] > 0
    assert exact["counting"]["off_by_one_accuracy"] == 1.0 and exact["counting"]["mae"] == 0.0
    assert late["counting"]["off_by_one_accuracy"] == 1.0 and late["counting"]["mae"] == 0.0  # the last count stands
    plus3 = _swapped(truth, {str(n): str(n + 3) for n in range(1, 10)})
    assert score(convs, plus3)["counting"]["mae"] == 3.0 and score(convs, plus3)["counting"]["off_by_one_accuracy"] == 0
    assert exact["start_stop"]["mean_iou"] == 1.0
    expected = []
    for conv in convs.values():
        by = {t.category: t.due_s for t in conv.targets.values()}
        if "visual_start" in by:
            d = by["visual_stop"] - by["visual_start"]
            expected.append(max(0.0, d - 2.0) / (d + 2.0))
    assert late["start_stop"]["mean_iou"] == pytest.approx(sum(expected) / len(expected))
    assert score(convs, _swapped(truth, {"start": "stop", "stop": "start"}))["start_stop"]["mean_iou"] == 0.0
    n_appear = sum(any(t.category == "visual_appear" for t in c.targets.values()) for c in convs.values())
    n_absent = sum("callout" in c.tags and not c.targets for c in convs.values())
    assert exact["callout"]["accuracy"] == 1.0
    assert exact["callout"]["early_answer_score"] == pytest.approx((n_appear + 0.5 * n_absent) / (n_appear + n_absent))
    assert late["callout"]["early_answer_score"] == pytest.approx(0.5 * n_absent / (n_appear + n_absent))


def test_trainer_loader_exposes_targets(family_data: dict[str, Path]) -> None:
    """The trainer's shard stream hands each sample's targets.json to the packer (and packing still works)."""
    from schemas.reader import shard_urls
    from trainer.config import preset
    from trainer.data import ShardStream, sample_examples

    cfg = preset("tiny").data
    stream = ShardStream(shard_urls(str(family_data["timed"] / "dataset")), cfg, seed=0, epoch=0, shuffle=False)
    samples = list(stream._samples(0, 1))
    with_targets = [s for s in samples if s.get("targets.json")]
    assert with_targets and all(isinstance(t["due_microturn"], int | None) for t in with_targets[0]["targets.json"])
    assert next(iter(sample_examples(with_targets[0], cfg))) is not None


@NEEDS_CLIPS
def test_inspect_and_report_show_targets(family_data: dict[str, Path], tmp_path: Path) -> None:
    from pipeline.tools.inspect import load_sample, render_sample
    from pipeline.tools.report import summarise

    dataset = str(family_data["visual"] / "dataset")
    summary = summarise(dataset)["targets"]
    over_samples = sum(
        t["category"] == "visual_count" for ws in _shard_targets(family_data["visual"]).values() for t, _ in ws
    )
    assert summary["visual_count"]["targets"] == over_samples >= 6  # two clips of three; one crosses a window
    assert summary["visual_start"]["conversations"] == 1
    row = next(r for r in read_index_rows(dataset) if r["n_targets"])
    sample = load_sample(dataset, row["key"])
    without = {k: v for k, v in sample.items() if k != "targets.json"}
    render_sample(sample, str(tmp_path / "with.png"), width_px=600, height_px=500)
    render_sample(without, str(tmp_path / "without.png"), width_px=600, height_px=500)
    assert (tmp_path / "with.png").read_bytes() != (tmp_path / "without.png").read_bytes()


def test_responses_from_a_directory_and_number_normalisation(family_data: dict[str, Path], tmp_path: Path) -> None:
    from evals.proactive import tokens

    truth = load_responses(str(family_data["visual"] / "out" / "truth.jsonl"))
    for conv_id, words in truth.items():  # the layout `microturn respond` writes: <conversation id>.json
        (tmp_path / f"{conv_id}.json").write_text(json.dumps({"words": words}), encoding="utf-8")
    assert load_responses(str(tmp_path)) == truth
    said = [
        {"text": w, "start": float(i)}
        for i, w in enumerate("Twenty-four dollars, one point five; 24.0 one two".split())
    ]
    assert tokens(said) == [("24", 0.0), ("dollars", 1.0), ("1.5", 2.0), ("24", 5.0), ("1", 6.0), ("2", 7.0)]
