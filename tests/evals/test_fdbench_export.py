"""Full-Duplex-Bench export: layout and fields, clip durations and windows, held-out conversations only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.evals import cmd_export_fdbench as export_fdbench_main
from evals.fdbench_export import ExportConfig, export_fdbench
from pipeline.job import run
from pipeline.tools.inspect import load_sample
from pipeline.tools.split import split_dataset

SR = 16_000
WINDOW_SAMPLES = 150 * 3200
FILES = {
    "v1/backchannel": {"input.wav", "transcription.json"},
    "v1/pause_handling": {"input.wav", "pause.json", "transcription.json"},
    "v1/smooth_turn_taking": {"input.wav", "turn_taking.json", "transcription.json"},
    "v1/user_interruption": {"input.wav", "interrupt.json", "transcription.json", "context.wav", "interrupt.wav"},
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
    key = f"{row['clip'].rsplit('_', 1)[0].removesuffix('_' + row['perspective'])}_{{:05d}}"  # format 3 keys
    out = []
    for w in range(start // WINDOW_SAMPLES, (end - 1) // WINDOW_SAMPLES + 1):
        assert key.format(w) in row["keys"]  # the clip names the windows it was cut from
        flac = load_sample(str(dataset), key.format(w), row["perspective"])["input.flac"]
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
            if task == "v1/backchannel":
                assert d.name.isdigit()  # eval_backchannel.py skips every other entry
            elif task == "v1/pause_handling":
                [p] = json.loads((d / "pause.json").read_text())
                assert set(p) == {"text", "timestamp"} and p["text"] == "[PAUSE]"
            elif task == "v1/smooth_turn_taking":
                [p] = json.loads((d / "turn_taking.json").read_text())
                assert set(p) == {"text", "timestamp"} and p["text"] == "[TURN-TAKING]"
            elif task == "v1/user_interruption":
                [p] = json.loads((d / "interrupt.json").read_text())
                assert set(p) == {"context", "interrupt", "timestamp"} and p["interrupt"]
                assert len(_wav(d / "context.wav")) and len(_wav(d / "interrupt.wav"))
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
        task = row["dir"].rsplit("/", 1)[0]
        if task == "v1/backchannel":  # ends with the user's last sound, as ICC clips do; timings in the GT file
            assert end == audio_end and all(start <= a < b <= end for a, b in row["marks_sample"])
        else:
            name = {
                "v1/pause_handling": "pause.json",
                "v1/smooth_turn_taking": "turn_taking.json",
                "v1/user_interruption": "interrupt.json",
            }.get(task, "metadata.json")
            obj = json.loads((d / name).read_text())
            ts = obj["timestamps"] if name == "metadata.json" else obj[0]["timestamp"]
            assert 0 <= ts[0] < ts[1] <= duration + 1e-3
            assert abs(ts[0] - (row["event_start_sample"] - start) / SR) < 1e-3
        if task == "v1/user_interruption":  # synthetic-style context.wav + interrupt.wav cut from input.wav
            a, b = row["event_start_sample"] - start, row["event_end_sample"] - start
            context, interrupt = _wav(d / "context.wav"), _wav(d / "interrupt.wav")
            assert len(context) == a and len(interrupt) == b - a and np.abs(interrupt).max() > 0.01
            np.testing.assert_array_equal(np.concatenate([context, interrupt]), audio[:b])
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
        if task == "v1/backchannel":  # every mark is a planted backchannel of the model side during the user's turn
            for a, b in row["marks_sample"]:
                assert any(
                    e["type"] == "backchannel"
                    and e["by"] == row["model"]
                    and e["of"] == row["user"]
                    and abs(e["start_s"] - a / SR) < 2e-3
                    and abs(e["end_s"] - b / SR) < 2e-3
                    for e in planted["events"]
                ), row
        elif task in PLANTED:
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


def test_export_needs_keep_audio(demo_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = str(demo_dataset / "dataset")
    split = split_dataset(dataset, eval_fraction=0.3, speaker_scope="conversation")
    with pytest.raises(ValueError, match="--keep_audio"):
        export_fdbench(dataset, str(tmp_path / "x"), split=split)
    capsys.readouterr()
    assert export_fdbench_main([dataset, "--out", str(tmp_path / "y"), "--speaker_scope", "conversation"]) == 2
    printed = capsys.readouterr()
    assert "microturn export fdbench: error:" in printed.err and "--keep_audio" in printed.err
    assert "error" not in printed.out  # errors go to stderr


def test_backchannel_ground_truth_follows_eval_backchannel(exported) -> None:
    """icc_gt_distribution.json: one distribution per clip folder, 0.2 s bins over the clip as their
    eval_backchannel.py bins the model's backchannels (bins int(start / 0.2) .. int(end / 0.2), + 1e-10, sum 1)."""
    _, out, _, rows = exported
    gt = json.loads((out / "v1" / "icc_gt_distribution.json").read_text())
    bc = [r for r in rows if r["task"] == "backchannel"]
    assert bc and set(gt) == {r["dir"].rsplit("/", 1)[1] for r in bc}
    for row in bc:
        dist = np.array(gt[row["dir"].rsplit("/", 1)[1]])
        duration = (row["end_sample"] - row["start_sample"]) / SR
        assert len(dist) == int(duration / 0.2) + 1 and abs(dist.sum() - 1) < 1e-9 and (dist > 0).all()
        hit = np.zeros(len(dist), dtype=bool)
        for a, b in row["marks_sample"]:
            hit[int((a - row["start_sample"]) / SR / 0.2) : int((b - row["start_sample"]) / SR / 0.2) + 1] = True
        assert dist[hit].min() > 0.01 and dist[~hit].max() < 1e-6


AMI = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "ami-seriously"
RTTM_MT = 0.2  # activity.npy resolution: events of RTTM-only sources sit on the 200 ms grid


@pytest.fixture(scope="module")
def ami_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """The 4-party AMI excerpt (RTTM turns, no words) written with --keep_audio and exported whole."""
    if not AMI.exists():
        pytest.skip("shared fixtures not present")
    root = tmp_path_factory.mktemp("ami-fdbench")
    bundle = {
        "id": "ami-seriously",
        "language": "en",
        "source": "AMI Meeting Corpus (via pyannote-audio)",
        "licence": "CC-BY-4.0",
        "rttm": str(AMI / "mixture.rttm"),
        "tracks": [{"path": str(AMI / "sources" / f"source{i}.wav")} for i in range(4)],
    }
    (root / "in").mkdir()
    (root / "in" / "bundle.json").write_text(json.dumps(bundle))
    run(["--input", str(root / "in"), "--output", str(root / "dataset"), "--keep_audio", "--allow_outside_paths"])
    split = {"eval": {"conversations": ["ami-seriously"]}, "train": {"conversations": []}}
    rows = export_fdbench(str(root / "dataset"), str(root / "out"), split=split, config=ExportConfig(context_s=6.0))
    return root / "dataset", root / "out", rows


def _rttm() -> list[tuple[str, float, float]]:
    out = []
    for line in (AMI / "mixture.rttm").read_text().splitlines():
        f = line.split()
        out.append((f[7], float(f[3]), float(f[3]) + float(f[4])))
    return out


def _stream(dataset: Path, row: dict, member: str) -> np.ndarray:
    """One stream of the whole conversation from the perspective's windows."""
    key = f"{row['clip'].rsplit('_', 1)[0].removesuffix('_' + row['perspective'])}_{{:05d}}"  # format 3 keys
    return np.concatenate([load_sample(str(dataset), key.format(w), row["perspective"])[member] for w in range(2)])


def test_third_party_tasks_from_a_meeting(ami_export) -> None:
    """v1.5 background_speech / talking_to_other: layout, durations, windows on the RTTM, and the others' stream
    mixed into input.wav over the event only (clean_input.wav silent there, equal to input.wav elsewhere)."""
    dataset, out, rows = ami_export
    turns = _rttm()
    by_task = {
        t: [r for r in rows if r["dir"].startswith(f"v1_5/{t}/")] for t in ("background_speech", "talking_to_other")
    }
    assert by_task["background_speech"] and by_task["talking_to_other"]
    files = {"input.wav", "clean_input.wav", "metadata.json", "transcription.json"}
    for task, task_rows in by_task.items():
        assert {p.name for p in (out / "v1_5" / task).iterdir()} == {r["clip"] for r in task_rows}
        for row in task_rows:
            d = out / row["dir"]
            assert {p.name for p in d.iterdir()} == files
            meta = json.loads((d / "metadata.json").read_text())
            assert set(meta) == {"context_text", "current_turn_text", "timestamps"}
            assert [x["speaker"] for x in json.loads((d / "transcription.json").read_text())] == [0, 1]
            audio, clean = _wav(d / "input.wav"), _wav(d / "clean_input.wav")
            start, end, audio_end = row["start_sample"], row["end_sample"], row["audio_end_sample"]
            ev_a, ev_b = row["event_start_sample"], row["event_end_sample"]
            assert len(audio) == len(clean) == end - start and end - audio_end == 5 * SR  # default response_s
            assert start <= ev_a < ev_b == audio_end and ev_a % 3200 == 0 and ev_b % 3200 == 0
            assert meta["timestamps"] == [round((ev_a - start) / SR, 4), round((ev_b - start) / SR, 4)]
            user, others = _stream(dataset, row, "input.flac"), _stream(dataset, row, "others.flac")
            a, b = ev_a - start, ev_b - start
            np.testing.assert_allclose(audio[:a], user[start:ev_a], atol=1 / 32768)
            mixed = np.clip(user[ev_a:ev_b] + others[ev_a:ev_b], -1, 1)
            np.testing.assert_allclose(audio[a:b], mixed, atol=1 / 32768)
            assert not audio[b:].any() and not clean[a:].any() and np.abs(others[ev_a:ev_b]).max() > 0.01
            np.testing.assert_array_equal(clean[:a], audio[:a])
            t0, t1 = ev_a / SR, ev_b / SR
            if task == "background_speech":  # a third party's turn, inside one of the model's, the user silent
                third = [s for s, x, y in turns if s not in (row["user"], row["model"]) and x < t1 and y > t0]
                assert third
                assert any(s == row["model"] and x < t0 + RTTM_MT and y > t1 - RTTM_MT for s, x, y in turns)
                assert not any(s == row["user"] and x < t1 and y > t0 for s, x, y in turns)
            else:  # the user's utterance, answered by a third party, the model silent
                assert any(s == row["user"] and abs(x - t0) < RTTM_MT and abs(y - t1) < RTTM_MT for s, x, y in turns)
                assert not any(s == row["model"] and x < t1 and y > t0 for s, x, y in turns)
                nxt = min((x for s, x, _ in turns if s != row["user"] and x > t0), default=None)
                assert nxt is not None and any(s not in (row["user"], row["model"]) and x == nxt for s, x, _ in turns)
