"""Issue 23.11, evaluation inputs: `eval fdbench` with a malformed task JSON or a broken response WAV, and `eval
proactive` with malformed responses or odd values (NaN or negative times, words that are not a list), each give
one line naming the file and what is wrong (exit 2), never a traceback and never a silent score.

    PYTHONPATH=. python -m pytest -q tests/evals/test_adversarial_eval_inputs.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from microturn_cli import main

TASK_OK = [{"text": "hello", "timestamp": [1.0, 1.5]}]
FDBENCH = {  # case -> (turn_taking.json text, output.wav bytes or None for a good one, words of the message)
    "task_not_json": ("{not json", None, "not a JSON task file"),
    "task_an_object": (json.dumps({"timestamp": [1, 2]}), None, "expected a list"),
    "task_nan_time": ('[{"timestamp": [NaN, 1.0]}]', None, "timestamp"),
    "task_string_time": (json.dumps([{"timestamp": ["a", "b"]}]), None, "timestamp"),
    "task_no_entry": ("[]", None, "timestamp"),
    "wav_garbage": (json.dumps(TASK_OK), b"RIFF\x00\x00garbage" * 10, "not a readable response WAV"),
    "wav_empty": (json.dumps(TASK_OK), b"", "not a readable response WAV"),
}


def good_wav(path: Path) -> None:
    t = np.arange(48_000) / 16_000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 1.2)).astype(np.float32), 16_000)


def run(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def test_fdbench_good_clip_scores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clip = tmp_path / "clips" / "v1" / "smooth_turn_taking" / "0"
    clip.mkdir(parents=True)
    (clip / "turn_taking.json").write_text(json.dumps(TASK_OK))
    good_wav(clip / "output.wav")
    assert main(["eval", "fdbench", "--clips", str(tmp_path / "clips"), "--responses", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["smooth_turn_taking"]["clips"] == 1


@pytest.mark.parametrize("case", sorted(FDBENCH))
def test_fdbench_bad_input_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    task_text, wav, words = FDBENCH[case]
    clip = tmp_path / "clips" / "v1" / "smooth_turn_taking" / "0"
    clip.mkdir(parents=True)
    (clip / "turn_taking.json").write_text(task_text)
    if wav is None:
        good_wav(clip / "output.wav")
    else:
        (clip / "output.wav").write_bytes(wav)
    line = run(["eval", "fdbench", "--clips", str(tmp_path / "clips"), "--responses", str(tmp_path)], capsys)
    assert words in line and str(clip) in line, line


PROACTIVE = {  # case -> (responses JSONL text, words of the message)
    "not_json": ("{oops\n", "not JSON"),
    "a_list": ("[1, 2]\n", "expected {'conversation_id', 'words'}"),
    "words_not_list": (json.dumps({"conversation_id": "c", "words": "ten"}) + "\n", "'words': a list"),
    "word_not_object": (json.dumps({"conversation_id": "c", "words": [3]}) + "\n", "word #0"),
    "nan_start": ('{"conversation_id": "c", "words": [{"text": "ten", "start": NaN, "end": 1}]}\n', "finite"),
    "negative_start": (
        json.dumps({"conversation_id": "c", "words": [{"text": "ten", "start": -2.0, "end": 1.0}]}) + "\n",
        "start -2.0",
    ),
    "end_before_start": (
        json.dumps({"conversation_id": "c", "words": [{"text": "ten", "start": 2.0, "end": 1.0}]}) + "\n",
        "start 2.0, end 1.0",
    ),
    "text_number": (json.dumps({"conversation_id": "c", "words": [{"text": 10, "start": 1.0}]}) + "\n", "'text'"),
}


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    root = tmp_path / "bundles" / "c"
    root.mkdir(parents=True)
    target = {"id": "t0", "family": "timed", "category": "timed_oneshot", "text": "ten", "due": 1.0, "start": 0.8,
              "end": 2.0}  # fmt: skip
    (root / "bundle.json").write_text(json.dumps({"id": "c", "tracks": [], "targets": [target]}))
    return tmp_path / "bundles"


def test_proactive_good_responses_score(bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"conversation_id": "c", "words": [{"text": "ten", "start": 1.0, "end": 1.3}]}))
    assert main(["eval", "proactive", "--data", str(bundles), "--responses", str(responses)]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(PROACTIVE))
@pytest.mark.parametrize("layout", ["jsonl", "directory"])
def test_proactive_bad_responses_are_one_line(
    case: str, layout: str, bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text, words = PROACTIVE[case]
    if layout == "jsonl":
        responses = tmp_path / "r.jsonl"
    else:
        if case == "a_list":
            words = "expected an object with 'words'"
        (tmp_path / "r").mkdir()
        responses = tmp_path / "r" / "c.json"
    responses.write_text(text)
    line = run(["eval", "proactive", "--data", str(bundles), "--responses", str(responses.parent if layout ==
               "directory" else responses)], capsys)  # fmt: skip
    assert words in line and str(responses) in line, line
