"""Full-Duplex-Bench export: layout and fields, clip durations and windows, held-out conversations only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.fdbench import ExportConfig, export_fdbench, export_fdbench_main
from pipeline.inspect import load_sample
from pipeline.job import run
from pipeline.split import split_dataset

SR = 16_000
WINDOW_SAMPLES = 150 * 3200
FILES = {
    "v1/pause_handling": {"input.wav", "pause.json", "transcription.json"},
    "v1/smooth_turn_taking": {"input.wav", "turn_taking.json", "transcription.json"},
    "v1/user_interruption": {"input.wav", "interrupt.json", "transcription.json"},
    "v1_5/user_interruption": {"input.wav", "clean_input.wav", "metadata.json", "transcription.json"},
    "v1_5/user_backchannel": {"input.wav", "clean_input.wav", "metadata.json", "transcription.json"},
}
PLANTED = {
    "v1/user_interruption": "interruption",
    "v1_5/user_interruption": "interruption",
    "v1_5/user_backchannel": "backchannel",
}


def keep_audio_subset(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three demo conversations and one broken bundle, written with --keep_audio; built once per session (also
    used by test_report.py as a second, different dataset)."""
    root = tmp_path_factory.getbasetemp() / "viz-keep-audio"
    if not (root / "dataset" / "manifest.json").exists():
        for name in ("demo-0002", "demo-0003", "demo-0004"):
            shutil.copytree(demo_dataset / "bundles" / name, root / "in" / name, dirs_exist_ok=True)
        (root / "in" / "broken").mkdir(parents=True, exist_ok=True)
        (root / "in" / "broken" / "bundle.json").write_text('{"id": "broken", "tracks": []}')
        run(["--input", str(root / "in"), "--output", str(root / "dataset"), "--keep_audio"])
    return root / "dataset"


@pytest.fixture(scope="module")
def exported(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, list[dict]]:
    dataset = keep_audio_subset(demo_dataset, tmp_path_factory)
    out = tmp_path_factory.mktemp("fdbench")
    split = split_dataset(str(dataset), eval_fraction=0.5, seed=0, speaker_scope="conversation")
    rows = export_fdbench(str(dataset), str(out), split=split, config=ExportConfig(context_s=6.0, response_s=4.0))
    return dataset, out, split, rows


def _wav(path: Path) -> np.ndarray:
    pcm, sr = sf.read(path, dtype="float32")
    assert sr == SR and pcm.ndim == 1
    return pcm


def _user_audio(dataset: Path, row: dict, start: int, end: int) -> np.ndarray:
    """The user's audio of the conversation in [start, end) samples, read from the windows' input.flac."""
    key = f"{row['clip'].rsplit('_', 1)[0]}_{{:05d}}"
    out = []
    for w in range(start // WINDOW_SAMPLES, (end - 1) // WINDOW_SAMPLES + 1):
        assert key.format(w) in row["keys"]  # the clip names the windows it was cut from
        flac = load_sample(str(dataset), key.format(w))["input.flac"]
        a, b = max(start, w * WINDOW_SAMPLES), min(end, (w + 1) * WINDOW_SAMPLES)
        out.append(flac[a - w * WINDOW_SAMPLES : b - w * WINDOW_SAMPLES])
    return np.concatenate(out)


def test_clips_come_from_held_out_conversations_only(exported) -> None:
    _, out, split, rows = exported
    held_out, train = set(split["eval"]["conversations"]), set(split["train"]["conversations"])
    assert held_out and train and held_out.isdisjoint(train)
    assert rows and {r["conversation_id"] for r in rows} <= held_out
    assert {r["dir"].rsplit("/", 1)[0] for r in rows} == set(FILES)  # every task has clips in the demo
    assert json.loads((out / "split.json").read_text()) == split
    assert len((out / "clips.jsonl").read_text().splitlines()) == len(rows)


def test_layout_files_and_fields(exported) -> None:
    _, out, _, rows = exported
    for task, files in FILES.items():
        clip_dirs = sorted((out / task).iterdir())
        assert clip_dirs and all(d.is_dir() for d in clip_dirs)  # their scripts treat every entry as a clip
        for d in clip_dirs:
            assert {p.name for p in d.iterdir()} == files, d
            tr = json.loads((d / "transcription.json").read_text())
            assert [set(x) for x in tr] == [{"speaker", "item"}] and tr[0]["speaker"] == 0
            assert all(set(i) == {"text", "timestamp"} and len(i["timestamp"]) == 2 for i in tr[0]["item"])
            if task == "v1/pause_handling":
                [p] = json.loads((d / "pause.json").read_text())
                assert set(p) == {"text", "timestamp"} and p["text"] == "[PAUSE]"
            elif task == "v1/smooth_turn_taking":
                [p] = json.loads((d / "turn_taking.json").read_text())
                assert set(p) == {"text", "timestamp"} and p["text"] == "[TURN-TAKING]"
            elif task == "v1/user_interruption":
                [p] = json.loads((d / "interrupt.json").read_text())
                assert set(p) == {"context", "interrupt", "timestamp"} and p["interrupt"]
            else:
                p = json.loads((d / "metadata.json").read_text())
                assert set(p) == {"context_text", "current_turn_text", "timestamps"} and p["current_turn_text"]


def test_durations_windows_and_audio(exported) -> None:
    dataset, out, _, rows = exported
    for row in rows:
        d = out / row["dir"]
        audio = _wav(d / "input.wav")
        start, end, audio_end = row["start_sample"], row["end_sample"], row["audio_end_sample"]
        assert len(audio) == end - start
        assert abs(len(audio) / SR - (row["end_s"] - row["start_s"])) < 1e-6
        # the clip is the user's stream of the conversation, cut at the same samples, then silence
        np.testing.assert_allclose(
            audio[: audio_end - start], _user_audio(dataset, row, start, audio_end), atol=1 / 32768
        )
        assert not audio[audio_end - start :].any()
        assert np.abs(audio).max() > 0.01
        duration = len(audio) / SR
        name = {
            "v1/pause_handling": "pause.json",
            "v1/smooth_turn_taking": "turn_taking.json",
            "v1/user_interruption": "interrupt.json",
        }.get(row["dir"].rsplit("/", 1)[0], "metadata.json")
        obj = json.loads((d / name).read_text())
        ts = obj["timestamps"] if name == "metadata.json" else obj[0]["timestamp"]
        assert 0 <= ts[0] < ts[1] <= duration + 1e-3
        assert abs(ts[0] - (row["event_start_sample"] - start) / SR) < 1e-3
        for item in json.loads((d / "transcription.json").read_text())[0]["item"]:
            assert 0 <= item["timestamp"][0] <= item["timestamp"][1] <= (audio_end - start) / SR + 1e-3
        if "clean_input.wav" in {p.name for p in d.iterdir()}:
            clean = _wav(d / "clean_input.wav")
            a, b = row["event_start_sample"] - start, row["event_end_sample"] - start
            assert len(clean) == len(audio) and not clean[a:b].any() and np.abs(audio[a:b]).max() > 0.01
            np.testing.assert_array_equal(clean[:a], audio[:a])


def test_events_are_the_planted_ones(demo_dataset: Path, exported) -> None:
    """The demo generator says where it planted each event; the clips' timings must land on them."""
    _, out, _, rows = exported
    for row in rows:
        planted = json.loads((demo_dataset / "bundles" / row["conversation_id"] / "planted.json").read_text())
        task = row["dir"].rsplit("/", 1)[0]
        t0 = row["event_start_sample"] / SR
        if task in PLANTED:
            match = [
                e
                for e in planted["events"]
                if e["type"] == PLANTED[task] and e["by"] == row["user"] and abs(e["start_s"] - t0) < 2e-3
            ]
            assert match and abs(match[0]["end_s"] - row["event_end_sample"] / SR) < 2e-3, row
        elif task == "v1/pause_handling":
            assert any(
                p["speaker"] == row["user"]
                and abs(p["start_s"] - t0) < 2e-3
                and abs(p["end_s"] - row["event_end_sample"] / SR) < 2e-3
                for p in planted["pauses"]
            ), row
        else:  # turn-taking: the model (the perspective) takes the floor after the user's turn ends at t0
            assert any(
                e["type"] == "yield"
                and e["by"] == row["model"]
                and e["of"] == row["user"]
                and 0.2 < e["start_s"] - t0 < 1.3
                for e in planted["events"]
            ), row


def test_export_needs_keep_audio(demo_dataset: Path, tmp_path: Path) -> None:
    dataset = str(demo_dataset / "dataset")
    split = split_dataset(dataset, eval_fraction=0.3, speaker_scope="conversation")
    with pytest.raises(ValueError, match="--keep_audio"):
        export_fdbench(dataset, str(tmp_path / "x"), split=split)
    assert export_fdbench_main([dataset, "--out", str(tmp_path / "y"), "--speaker_scope", "conversation"]) == 2
