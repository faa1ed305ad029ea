"""Synthesised delegation conversations: planted events and weave labels land where they were planted."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from schemas.layout import EVENT_CONT, EVENT_OPEN, IN_TEXT, OUT_TEXT, LayoutSpec, decode_event_bytes, pack
from schemas.reader import iter_samples
from schemas.validate import validate
from synth.agent import VARIANTS, make_agent_bundles, plan_agent
from synth.espeak import EspeakBackend

COUNT = len(VARIANTS)


@pytest.fixture(scope="module")
def agent_dataset(tmp_path_factory) -> tuple[Path, str]:
    from pipeline.job import run

    root = tmp_path_factory.mktemp("agent")
    make_agent_bundles(root / "bundles", count=COUNT, seed=1)
    run(["--input", str(root / "bundles"), "--output", str(root / "dataset")])
    return root / "bundles", str(root / "dataset")


def test_same_seed_same_plan() -> None:
    backend = EspeakBackend()
    a = plan_agent(backend, random.Random(5), variant="side_question", tool="report")[1]
    b = plan_agent(backend, random.Random(5), variant="side_question", tool="report")[1]
    assert a == b
    kinds = [e["kind"] for e in a["events"]]
    assert kinds[0] == "task_start" and "task_send" in kinds and kinds.count("worker_delivery") >= 2


def test_events_land_in_their_microturns_and_sides(agent_dataset) -> None:
    bundles, dataset = agent_dataset
    assert validate(dataset).ok
    samples = {s["meta.json"]["conversation_id"]: s for s in iter_samples(dataset)}
    assert len(samples) == COUNT  # one perspective (the assistant), one window each
    for conv_id, sample in samples.items():
        planted = json.loads((bundles / conv_id / "planted.json").read_text())
        got = sample["events.json"]
        assert [(e["kind"], e["name"]) for e in got] == [(e["kind"], e["name"]) for e in planted["events"]]
        for e, p in zip(got, planted["events"], strict=True):
            assert e["microturn"] == int(p["time_s"] // 0.2)
            output = p["kind"] in ("task_start", "task_send", "task_resolve", "tool_call")
            assert e["side"] == ("output" if output else "input") and e["target"] == output
        # an output-side event never leaks into the input side of the token layout
        packed = pack(sample, LayoutSpec(frame_patches=0), first=0, count=len(sample["mask.npy"]))
        in_tokens = packed.text[packed.kind == IN_TEXT]
        out_names = [n for n, _ in decode_event_bytes(packed.text[packed.kind == OUT_TEXT].tolist())]
        in_names = [n for n, _ in decode_event_bytes(in_tokens.tolist())]
        assert packed.event_bytes_cut == 0
        assert out_names == [e["name"] for e in got if e["side"] == "output"]
        assert set(in_names) <= {e["name"] for e in got if e["side"] == "input"}
        assert not any(n in ("task_start", "task_send", "task_resolve") for n in in_names)
        assert not packed.target_text[packed.event & (packed.kind == IN_TEXT)].any()
        assert np.isin(in_tokens, [EVENT_OPEN, EVENT_CONT]).sum() >= 1


def test_weave_waits_for_the_users_silence(agent_dataset) -> None:
    bundles, _ = agent_dataset
    woven = 0
    for d in sorted(bundles.iterdir()):
        planted = json.loads((d / "planted.json").read_text())
        bundle = json.loads((d / "bundle.json").read_text())
        labels = {lab["label"]: lab for lab in planted["labels"]}
        finals = [e for e in planted["events"] if e["kind"] == "worker_delivery" and e["topic"] == "final"]
        if planted["variant"] == "cancel":
            assert "weave" not in labels and not finals
            continue
        woven += 1
        weave, arrive = labels["weave"], labels["arrive"]
        assert weave["start_s"] >= arrive["start_s"] == pytest.approx(finals[0]["time_s"], abs=1e-3)
        user = [w for w in bundle["words"] if w["speaker"] == "user"]
        # the user has been silent >= 0.4 s at the weave and does not speak during it
        assert all(w["end"] <= weave["start_s"] - 0.4 or w["start"] >= weave["end_s"] for w in user)
        # and it is the first such moment after the arrival
        before = [w["end"] for w in user if w["end"] <= weave["start_s"]]
        assert weave["start_s"] == pytest.approx(max(arrive["start_s"], max(before) + 0.4), abs=0.05) or any(
            w["start"] <= arrive["start_s"] for w in bundle["words"] if w["speaker"] == "assistant"
        )
    assert woven == COUNT - 1
