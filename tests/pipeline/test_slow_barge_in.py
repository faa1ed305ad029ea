"""A barge-in the model yields to slowly (issue 13.4) is an interruption with its stop latency, in the samples, the
manifest and the Full-Duplex-Bench export; a one-conversation dataset is exported whole (issue 13.5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.evals import cmd_export_fdbench as export_fdbench_main
from pipeline.job import run
from schemas.reader import iter_samples
from schemas.sample import LABEL_BITS

from ..factories import make_bundle

STOP_LATENCY_S = 1.07  # the model (A) stops 1.07 s after the user (B) starts, beyond the retired 1 s window


def _words() -> list[dict]:
    a = [
        ("so", 0.10, 0.40),
        ("what", 0.50, 0.80),
        ("I", 0.90, 1.10),
        ("wanted", 1.20, 1.60),
        ("to", 1.70, 1.90),
        ("say", 2.00, 2.30),
        ("is", 2.35, 1.50 + STOP_LATENCY_S),
    ]
    b = [("wait", 1.50, 1.90), ("no", 2.00, 2.40), ("listen", 2.50, 3.00), ("to", 3.10, 3.30), ("me", 3.40, 3.90)]
    return [{"text": t, "start": s, "end": e, "speaker": spk} for spk, ws in (("A", a), ("B", b)) for t, s, e in ws]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slow-barge-in")
    make_bundle(root / "in" / "slow", conv_id="slow", seconds=5.0, words=_words())
    run(["--input", str(root / "in"), "--output", str(root / "out"), "--keep_audio"])
    return root / "out"


def test_slow_yield_is_labelled_with_its_stop_latency(dataset: Path) -> None:
    samples = {s["meta.json"]["perspective"]: s for s in iter_samples(str(dataset))}
    onset = int(1.5 // 0.2)  # micro-turn 7
    for model, label in (("A", "interruption"), ("B", "output_interruption")):
        s = samples[model]
        assert np.nonzero(s["labels.npy"] & LABEL_BITS[label])[0].tolist() == [onset], model
        (got,) = s["meta.json"]["interruptions"]
        assert got["microturn"] == onset and got["label"] == label
        assert got["stop_latency_s"] == pytest.approx(STOP_LATENCY_S, abs=1e-3)
        assert s["floor.npy"][onset] == 0  # the floor changes there
    manifest = json.loads((dataset / "manifest.json").read_text())
    tt = manifest["turn_taking"]
    assert tt["event_counts"] == {"interruption": 1}
    assert tt["interruption_stop_latency_bins"] == {"5": 1}  # 1.07 s lies in [1.0, 1.2)
    assert "interruption_window_s" not in manifest["config"]["labels"]


def test_fdbench_exports_the_slow_barge_in_from_a_one_conversation_dataset(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert export_fdbench_main([str(dataset), "--out", str(tmp_path / "fd"), "--context_s", "2"]) == 0
    printed = capsys.readouterr().out
    assert "one conversation: nothing to hold out from" in printed
    rows = [json.loads(line) for line in (tmp_path / "fd" / "clips.jsonl").read_text().splitlines()]
    interrupt = [r for r in rows if r["dir"].startswith("v1/user_interruption/") and r["model"] == "A"]
    assert len(interrupt) == 1 and interrupt[0]["event_start_sample"] == 24_000
    (meta,) = json.loads((tmp_path / "fd" / interrupt[0]["dir"] / "interrupt.json").read_text())
    assert meta["interrupt"] == "wait no listen to me"
    split = json.loads((tmp_path / "fd" / "split.json").read_text())
    assert split["eval"]["conversations"] == ["slow"] and split["train"]["conversations"] == []
    # --all says so too; --all with --split is refused
    assert export_fdbench_main([str(dataset), "--out", str(tmp_path / "fd2"), "--all"]) == 0
    assert "--all: no held-out split" in capsys.readouterr().out
    (tmp_path / "s.json").write_text(json.dumps(split))
    assert (
        export_fdbench_main(
            [str(dataset), "--out", str(tmp_path / "fd3"), "--all", "--split", str(tmp_path / "s.json")]
        )
        == 2
    )
