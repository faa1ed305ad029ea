"""Full-Duplex-Bench v1 scoring of response WAVs: a good and a bad response set score differently.

PYTHONPATH=. python -m pytest -q tests/trainer/test_fdbench_eval.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.evals import cmd_fdbench as eval_fdbench_main
from evals.fdbench_score import energy_vad, evaluate_fdbench

SR = 16_000
CLIP_S = 8.0


def speech(a: float, b: float, seed: int = 0) -> np.ndarray:
    """A clip-long track with noise 'speech' (-14 dBFS) in [a, b) seconds, silence elsewhere."""
    x = np.zeros(int(CLIP_S * SR), np.float32)
    x[int(a * SR) : int(b * SR)] = np.random.default_rng(seed).normal(0, 0.2, int(b * SR) - int(a * SR))
    return x


def write_clips(root: Path) -> None:
    tasks = {
        "pause_handling": ("pause.json", [{"text": "[PAUSE]", "timestamp": [3.0, 4.5]}]),
        "smooth_turn_taking": ("turn_taking.json", [{"text": "[TURN-TAKING]", "timestamp": [3.0, 8.0]}]),
        "user_interruption": ("interrupt.json", [{"context": "a", "interrupt": "b", "timestamp": [4.0, 5.0]}]),
    }
    for task, (name, obj) in tasks.items():
        for i in range(2):
            d = root / "v1" / task / f"c{i}"
            d.mkdir(parents=True)
            sf.write(d / "input.wav", speech(0.5, 3.0), SR)
            (d / name).write_text(json.dumps(obj))


def write_responses(root: Path, good: bool) -> None:
    tracks = {  # a good model: quiet in the pause, answers 0.4 s after the turn / 0.6 s after the interruption
        "pause_handling": speech(0, 0) if good else speech(3.2, 5.5),
        "smooth_turn_taking": speech(3.4, 6.0) if good else speech(0, 0),
        "user_interruption": speech(1.0, 4.2) + speech(5.6, 7.5) if good else speech(1.0, 4.2),
    }
    for task, pcm in tracks.items():
        for i in range(2):
            d = root / "v1" / task / f"c{i}"
            d.mkdir(parents=True)
            sf.write(d / "output.wav", pcm, SR)


def test_energy_vad_segments() -> None:
    segs = energy_vad(speech(1.0, 2.0))
    assert len(segs) == 1
    assert segs[0][0] == pytest.approx(0.97, abs=0.03) and segs[0][1] == pytest.approx(2.03, abs=0.03)
    assert energy_vad(speech(1.0, 1.1)) == []  # shorter than 250 ms


def test_good_and_bad_responses_score_differently(tmp_path, capsys) -> None:
    write_clips(tmp_path / "clips")
    write_responses(tmp_path / "good", True)
    write_responses(tmp_path / "bad", False)
    good = evaluate_fdbench(str(tmp_path / "clips"), str(tmp_path / "good"))
    bad = evaluate_fdbench(str(tmp_path / "clips"), str(tmp_path / "bad"))
    assert good["pause_handling"]["take_over_rate"] == 0.0 and bad["pause_handling"]["take_over_rate"] == 1.0
    assert good["smooth_turn_taking"]["take_over_rate"] == 1.0 and bad["smooth_turn_taking"]["take_over_rate"] == 0.0
    assert good["smooth_turn_taking"]["mean_latency_s"] == pytest.approx(0.37, abs=0.03)  # 30 ms VAD padding
    assert good["user_interruption"]["take_over_rate"] == 1.0 and bad["user_interruption"]["take_over_rate"] == 0.0
    assert good["user_interruption"]["mean_latency_s"] == pytest.approx(0.57, abs=0.03)
    assert bad["smooth_turn_taking"]["mean_latency_s"] is None
    assert eval_fdbench_main(["--clips", str(tmp_path / "clips"), "--responses", str(tmp_path / "good")]) == 0
    assert "smooth_turn_taking" in capsys.readouterr().out
