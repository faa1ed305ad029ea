"""The behaviour benchmark's argument handling, CPU side (benchmarks/behaviour_demo.py, benchmarks/behaviour_gpu.sh).

PYTHONPATH=. python -m pytest -q tests/evals/test_behaviour_benchmark.py
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def bench():
    spec = importlib.util.spec_from_file_location("behaviour_demo", REPO / "benchmarks" / "behaviour_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_script_commands_parse(tmp_path) -> None:
    """Every command the GPU script runs parses; its training runs use the small preset on cuda, audio only, and
    the same data as the CPU benchmark (same data key, so a CPU run's cached data is reused)."""
    demo = bench()
    out = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "behaviour_gpu.sh"), str(tmp_path / "out")],
        env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin", "HEARD": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 6
    parsed = [demo.build_parser().parse_args(shlex.split(line)[2:]) for line in out]
    assert [a.stage for a in parsed] == ["data", "data", "train", "train", "train", "report"]
    cpu = demo.build_parser().parse_args(["--out", str(tmp_path / "out")])
    for a in parsed[2:5]:
        assert (a.preset, a.device) == ("small", "cuda") and a.out == str(tmp_path / "out")
        assert demo.data_key(a) == demo.data_key(cpu) | {"cues": a.cues}
        cfg = demo.train_config(a)
        assert cfg.data.frame_patches == 0 and cfg.data.context_microturns == 32 and cfg.model.dim == 512
    assert [(a.cues, a.user_text) for a in parsed[2:5]] == [("natural", "none"), ("none", "none"), ("natural", "heard")]
    assert demo.run_name(parsed[2]) == "small-natural-none" and demo.model_file("small") == "model-small.pt"


def test_cpu_defaults_follow_the_issue() -> None:
    demo = bench()
    a = demo.build_parser().parse_args([])
    assert (a.train_conversations, a.eval_conversations, a.train_minutes) == (300, 40, 30.0)
    assert (a.cues, a.user_text, a.preset, a.device) == ("natural", "none", "tiny", "cpu")
    cfg = demo.train_config(demo.build_parser().parse_args(["--user_text", "heard"]))
    assert cfg.data.user_text == "heard" and cfg.data.layout.user_text == "heard" and cfg.data.frame_patches == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
def test_cuda_without_a_gpu_stops_with_a_message(tmp_path, capsys) -> None:
    demo = bench()
    assert demo.main(["--out", str(tmp_path), "--device", "cuda", "--preset", "small"]) == 2
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()


def test_the_threshold_with_the_best_dev_shift_hold_wins_ties_to_the_higher() -> None:
    demo = bench()
    rows = [
        {"threshold": 0.2, "shift_hold_bacc": 0.61},
        {"threshold": 0.3, "shift_hold_bacc": 0.70},
        {"threshold": 0.4, "shift_hold_bacc": 0.70},
        {"threshold": 0.5, "shift_hold_bacc": None},
    ]
    assert demo.best_threshold(rows) == 0.4
    assert demo.best_threshold(rows[:2]) == 0.3
    with pytest.raises(ValueError):
        demo.best_threshold([])


def test_the_stop_threshold_with_the_best_goal_mean_wins_ties_to_none() -> None:
    demo = bench()

    def row(stop, sh, stop_rate, bc):
        return {
            "stop_threshold": stop,
            "shift_hold_bacc": sh,
            "interruption_stop_1s": stop_rate,
            "backchannel_continue": bc,
        }

    rows = [row(None, 0.7, 0.6, 0.8), row(0.1, 0.7, 0.4, 0.9), row(0.3, 0.7, 0.8, 0.7), row(0.5, 0.6, None, 0.9)]
    assert demo.goal_mean(rows[2]) == pytest.approx(0.7333, abs=1e-4)
    assert demo.goal_mean(rows[3]) == pytest.approx(0.5)  # no interruptions count 0
    assert demo.best_stop(rows) == 0.3
    assert demo.best_stop([rows[0], row(0.3, 0.7, 0.6, 0.8)]) is None
    with pytest.raises(ValueError):
        demo.best_stop([])


def test_user_voices_name_the_speaker_not_playing_the_model(tmp_path) -> None:
    import json
    from types import SimpleNamespace

    demo = bench()
    bundle = tmp_path / "bundles" / "eval" / "dlg-1"
    bundle.mkdir(parents=True)
    (bundle / "bundle.json").write_text(json.dumps({"synth": {"speaker_voices": {"A": "fl-rms", "B": "es-wm-f5"}}}))
    convs = [
        SimpleNamespace(conversation_id="dlg-1", name="x", perspective="A"),
        SimpleNamespace(conversation_id="dlg-1", name="x", perspective="B"),
        SimpleNamespace(conversation_id="dlg-2", name="y", perspective="A"),  # no bundle: unknown
    ]
    assert demo.user_voices(tmp_path, convs) == ["es-wm-f5", "fl-rms", "?"]


def test_train_dialogue_sets_the_training_recipe_only_and_enters_the_data_key(tmp_path) -> None:
    """--train_dialogue's flags become DialogueConfig fields for the training set and a part of the data key (so
    cached data made with another recipe is not reused); a bad flag or a speed given there is refused."""
    demo = bench()
    parse = demo.build_parser().parse_args
    plain = parse(["--out", str(tmp_path)])
    recipe = parse(["--out", str(tmp_path), "--train_dialogue", "--interrupt_p 0.3 --interrupt_stop_s 0.3,0.5"])
    assert demo.train_dialogue(plain) == {}
    assert demo.train_dialogue(recipe) == {"interrupt_p": 0.3, "interrupt_stop_s": (0.3, 0.5)}
    assert "train_dialogue" not in demo.data_key(plain)
    assert demo.data_key(recipe)["train_dialogue"] == {"interrupt_p": 0.3, "interrupt_stop_s": [0.3, 0.5]}
    for bad in ("--interrupt_p x", "--no_such_flag 1", "--speed_perturb 0.9,1.1", "--boundary_tones"):
        with pytest.raises(SystemExit):
            demo.train_dialogue(parse(["--out", str(tmp_path), "--train_dialogue", bad]))


def test_boundary_tones_go_to_every_set_and_enter_the_data_key(tmp_path) -> None:
    """--boundary_tones makes the training, dev and held-out sets with synth dialogues' boundary tones (real
    bundles: their recipe says so) and is part of the data key."""
    demo = bench()
    parse = demo.build_parser().parse_args
    tones = parse(["--out", str(tmp_path), "--boundary_tones", "--gen_workers", "1"])
    assert demo.data_key(tones)["boundary_tones"] is True and "boundary_tones" not in demo.data_key(parse([]))
    for split, perturb in (("train", True), ("heldout", False)):
        out = tmp_path / split
        demo.make_bundles(out, 1, split, tones, perturb=perturb)
        (bundle,) = out.glob("*/bundle.json")
        assert json.loads(bundle.read_text())["synth"]["config"]["boundary_tones"] is True


def test_fit_steps_shortens_the_schedule_to_the_time_cap_and_keeps_it_on_resume(
    demo_dataset, tmp_path, monkeypatch
) -> None:
    """--fit_steps: two short calibrations on the real training set measure the pace and the start-up; the schedule
    becomes what the cap allows (at most --steps), is written beside the run and read back (no second calibration)
    while the arguments it depends on stay the same."""
    demo = bench()
    monkeypatch.setattr(demo, "CALIBRATION_S", (3.0, 6.0))
    d = tmp_path / "data"
    d.mkdir()
    (d / "train").symlink_to(demo_dataset / "dataset")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = demo.build_parser().parse_args(["--fit_steps", "--steps", "100000", "--train_minutes", "0.5"])
    steps = demo.fitted_steps(run_dir, d, args, 0.0)
    saved = json.loads((run_dir / "fitted_steps.json").read_text())
    (n1, w1), (n2, w2) = saved["calibration"]
    assert n1 >= 1 and n2 >= 1 and not (run_dir / "calibration").exists()
    # the pace from the difference of the two runs; on a loaded machine (the suite runs a worker per core) the
    # longer run can reach no more steps than the shorter one, and the pace falls back to the longer run alone
    differs = n2 > n1 and w2 > w1
    assert saved["pace"] == pytest.approx((n2 - n1) / (w2 - w1) if differs else n2 / w2)
    assert saved["pace"] > 0 and 0.0 <= saved["startup_s"] <= w1
    assert steps == max(3, int(demo.FIT_MARGIN * saved["pace"] * (30.0 - 3 * saved["startup_s"]))) < 100000
    (d / "train").unlink()  # a second calibration would now fail: the saved schedule is used
    assert demo.fitted_steps(run_dir, d, args, 0.0) == steps
    capped = demo.build_parser().parse_args(["--fit_steps", "--steps", "4", "--train_minutes", "0.5"])
    (d / "train").symlink_to(demo_dataset / "dataset")
    assert demo.fitted_steps(run_dir, d, capped, 0.0) <= 4
