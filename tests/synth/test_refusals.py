"""Spoken refusals end to end: example prompts -> bundles -> the Beam job -> shards -> reader, labels checked.

Also: byte-identical output for the same prompts and seed, the text twin, the summary, tags in the index,
and per-line errors for bad prompt files.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cli.synth import cmd_refusals as refusals_main
from schemas.reader import iter_samples
from schemas.sample import LABEL_BITS
from synth.layouts import LAYOUTS
from synth.refusals import generate_refusals, parse_weights, read_prompts

EXAMPLES = Path(__file__).resolve().parents[2] / "synth" / "prompts" / "example_prompts.jsonl"
SEED, COUNT = 2, 7  # seed 2 draws all five layouts in its first 7 examples (one escalation: keeps the test short)
PLANTED_TO_LABEL = {
    ("yield", "model"): "yield_to_output",
    ("yield", "user"): "yield_to_input",
    ("interruption", "user"): "interruption",
    ("backchannel", "user"): "backchannel",
}
EVENT_LABELS = (
    "backchannel",
    "interruption",
    "yield_to_input",
    "yield_to_output",
    "output_backchannel",
    "output_interruption",
)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def refusal_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from pipeline.job import run

    root = tmp_path_factory.mktemp("refusals")
    t0 = time.perf_counter()
    summary = generate_refusals(EXAMPLES, root / "out", seed=SEED, count=COUNT)
    synth_s = time.perf_counter() - t0
    run(["--input", str(root / "out" / "bundles"), "--output", str(root / "dataset")])
    print(
        f"\nrefusals: {summary['examples']} conversations, {summary['hours'] * 3600:.1f} s of audio, synthesised in "
        f"{synth_s:.1f} s ({summary['throughput_audio_s_per_wall_s']} s of conversation per wall second); "
        f"pipeline {time.perf_counter() - t0 - synth_s:.1f} s"
    )
    return root, summary


def _per_conversation(dataset: Path) -> dict[str, dict]:
    """Labels, activity and annotation micro-turns per conversation, windows concatenated."""
    convs: dict[str, dict] = {}
    for s in iter_samples(str(dataset)):
        meta = s["meta.json"]
        c = convs.setdefault(
            meta["conversation_id"], {"labels": {}, "act": {}, "ann": [], "tags": meta["tags"], "outputs": set()}
        )
        n, a = meta["num_microturns"], meta["start_microturn"]
        c["labels"][a] = s["labels.npy"][:n]
        c["act"][a] = s["activity.npy"][:n]
        c["outputs"].add(meta["speakers"]["output"])
        assert meta["tags"] == c["tags"]
        for sp in s["annotations.json"]:
            c["ann"].append(
                {**sp, "start_microturn": sp["start_microturn"] + a, "end_microturn": sp["end_microturn"] + a}
            )
    for c in convs.values():
        c["labels"] = np.concatenate([c["labels"][k] for k in sorted(c["labels"])])
        c["act"] = np.concatenate([c["act"][k] for k in sorted(c["act"])])
    return convs


def test_every_layout_reaches_the_shards_with_its_labels(refusal_dataset) -> None:
    root, summary = refusal_dataset
    bundles = root / "out" / "bundles"
    convs = _per_conversation(root / "dataset")
    assert sorted(convs) == sorted(p.name for p in bundles.iterdir())
    assert {c["tags"]["layout"] for c in convs.values()} == set(LAYOUTS)
    for conv_id, c in sorted(convs.items()):
        layout, labels = c["tags"]["layout"], c["labels"]
        assert c["outputs"] == {"model"}, conv_id  # only the model's perspective is emitted
        bundle = _load(bundles / conv_id / "bundle.json")
        planted = _load(bundles / conv_id / "planted.json")["events"]
        expected: dict[str, set[int]] = {name: set() for name in EVENT_LABELS}
        for e in planted:
            expected[PLANTED_TO_LABEL[e["type"], e["by"]]].add(int(e["start_s"] // 0.2))
        for name, mts in expected.items():
            got = {int(i) for i in np.nonzero(labels & LABEL_BITS[name])[0]}
            assert got == mts, (conv_id, layout, name)  # every planted event labelled, nothing else
        n_int, n_bc = len(expected["interruption"]), len(expected["backchannel"])
        assert (n_int >= 1) == (layout == "barge_in") and (n_bc >= 1) == (layout == "backchannel"), conv_id
        # refusal annotations: on the output side, covering the model's refusal speech
        refusals = [a for a in bundle.get("annotations", []) if a["label"] == "refusal"]
        if layout == "benign":
            assert not refusals and not c["ann"] and c["tags"]["is_refusal"] == "false"
            continue
        assert c["tags"]["is_refusal"] == "true" and refusals
        assert all(a["speaker"] == "model" for a in refusals)
        want = set()
        for a in refusals:
            inside = [w for w in bundle["words"] if w["speaker"] == "model" and a["start"] <= w["start"] < a["end"]]
            assert inside and inside[0]["start"] == a["start"] and max(w["end"] for w in inside) == a["end"]
            want |= set(range(int(a["start"] // 0.2), -int(-a["end"] // 0.2)))
        got = set()
        for sp in c["ann"]:
            assert (sp["label"], sp["stream"], sp["speaker"]) == ("refusal", "output", "model")
            got |= set(range(sp["start_microturn"], sp["end_microturn"]))
        assert got == want, conv_id
        assert all(labels[k] & LABEL_BITS["output_speech"] for k in (min(got), max(got))), conv_id
        assert len(refusals) == {"plain": 1, "barge_in": 2, "backchannel": 1}.get(layout, len(refusals))
    assert summary["examples"] == COUNT and summary["errors"] == 0


def test_tags_and_annotations_reach_the_index(refusal_dataset) -> None:
    root, _ = refusal_dataset
    rows = pq.read_table(root / "dataset" / "index").to_pylist()
    assert rows
    for r in rows:
        tags = dict(r["tags"])
        assert {"category", "layout", "is_refusal", "prompt_id", "seed", "user_voice", "model_voice"} <= set(tags)
        assert tags["seed"] == str(SEED) and r["output_speaker"] == "model"
        if tags["layout"] == "benign":
            assert r["annotations"] == []
    assert any(r["annotations"] == ["refusal"] for r in rows)
    layouts = Counter(dict(r["tags"])["layout"] for r in rows if r["window"] == 0)
    assert set(layouts) == set(LAYOUTS)


def test_text_twin_and_summary(refusal_dataset) -> None:
    root, summary = refusal_dataset
    out = root / "out"
    twins = [json.loads(line) for line in (out / "text_twin.jsonl").read_text().splitlines()]
    assert [t["id"] for t in twins] == sorted(p.name for p in (out / "bundles").iterdir())
    for t in twins:
        bundle = _load(out / "bundles" / t["id"] / "bundle.json")
        assert (t["layout"], t["category"], t["prompt_id"]) == tuple(
            bundle["tags"][k] for k in ("layout", "category", "prompt_id")
        )
        turns = [m for m in t["messages"] if not m.get("backchannel")]
        assert turns[0]["role"] == "user" and turns[-1]["role"] == "assistant"
        assert all(a["role"] != b["role"] for a, b in zip(turns, turns[1:], strict=False))
        assert any(m.get("interrupted") for m in t["messages"]) == (t["layout"] == "barge_in")
        assert any(m.get("backchannel") for m in t["messages"]) == (t["layout"] == "backchannel")
        spoken = [w["text"] for w in sorted(bundle["words"], key=lambda w: w["start"]) if w["speaker"] == "model"]
        written = " ".join(m["content"] for m in turns if m["role"] == "assistant")
        assert [w.lower() for w in spoken] == [w.strip(".,!?:;").lower() for w in written.split()]
    written = _load(out / "summary.json")
    assert written == {k: v for k, v in summary.items() if k != "throughput_audio_s_per_wall_s"}
    assert sum(written["per_layout"].values()) == sum(written["per_category"].values()) == COUNT
    assert 0 < written["hours"] < 0.1


def test_same_prompts_and_seed_give_identical_bytes(refusal_dataset, tmp_path) -> None:
    """Example i depends only on (prompts, seed, i): a shorter run rewrites the first examples byte for byte
    (the layouts' own determinism, every layout, is in test_layouts.py)."""
    root, _ = refusal_dataset
    n = 4
    generate_refusals(EXAMPLES, tmp_path / "again", seed=SEED, count=n)
    first = sorted(
        p.relative_to(root / "out" / "bundles") for p in (root / "out" / "bundles").rglob("*") if p.is_file()
    )
    again = sorted(
        p.relative_to(tmp_path / "again" / "bundles")
        for p in (tmp_path / "again" / "bundles").rglob("*")
        if p.is_file()
    )
    assert len(again) == 4 * n and set(again) <= set(first)
    for rel in again:
        assert (root / "out" / "bundles" / rel).read_bytes() == (tmp_path / "again" / "bundles" / rel).read_bytes()
    twin = (root / "out" / "text_twin.jsonl").read_text().splitlines()
    assert (tmp_path / "again" / "text_twin.jsonl").read_text().splitlines() == twin[:n]
    generate_refusals(EXAMPLES, tmp_path / "other", seed=SEED + 1, count=1)  # another seed: other ids and draws
    assert [p.name for p in (tmp_path / "other" / "bundles").iterdir()] == [f"rf-s{SEED + 1}-000000"]


def test_bad_prompt_lines_give_one_error_each_and_good_lines_complete(tmp_path, capsys) -> None:
    lines = [
        '{"id": "ok-1", "category": "weapons", "text": "[PLACEHOLDER harmful request: demo]"}',
        '{"id": "bad-json", "category": "weapons", "text": "unterminated',
        '{"id": "no-text", "category": "weapons"}',
        '{"category": "weapons", "text": "no id here"}',
        '{"id": "empty", "category": "weapons", "text": "   "}',
        '{"id": "symbols", "category": "weapons", "text": "\u2014 \U0001f642 ?!"}',
        '{"id": "ok-1", "category": "weapons", "text": "same id again"}',
        '{"id": "benign-no-answer", "category": "fraud", "benign": true, "text": "is this a scam?"}',
        '{"id": "typo", "category": "fraud", "txt": "hello"}',
        "",
        "# a comment",
        '{"id": "ok-2", "category": "fraud", "benign": true, "text": "is this email a scam?", "answer": "Probably."}',
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prompts, errors = read_prompts(path)
    assert [p.id for p in prompts] == ["ok-1", "ok-2"]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6, 7, 8, 9]
    reasons = [e["error"] for e in errors]
    for line, needle in zip(
        range(2, 10),
        (
            "malformed JSON",
            "missing field 'text'",
            "'id'",
            "'text' is empty",
            "no speakable word",
            "repeats the id of line 1",
            "missing field 'answer'",
            "unknown field",
        ),
        strict=True,
    ):
        assert f"prompts.jsonl:{line}:" in reasons[line - 2] and needle in reasons[line - 2], reasons[line - 2]
    rc = refusals_main(
        [
            "--prompts",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--count",
            "3",
            "--no-progress",
            "--weights",
            "plain=1,benign=1",
        ]
    )
    assert rc == 1  # some lines failed, the good ones were written
    err = capsys.readouterr().err
    assert err.count("error: ") >= 8 and "malformed JSON" in err
    assert len(list((tmp_path / "out" / "bundles").iterdir())) == 3
    assert len((tmp_path / "out" / "errors.jsonl").read_text().splitlines()) == 8


def test_bad_options_fail_early_with_a_clear_message(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="LAYOUT=WEIGHT"):
        parse_weights("plane=1")
    assert parse_weights("plain=2,benign=1")["barge_in"] == 0.0
    base = ["--prompts", str(EXAMPLES), "--out", str(tmp_path / "o"), "--no-progress"]
    assert refusals_main([*base, "--stop-ms-max", "1200"]) == 2
    err = capsys.readouterr().err
    assert "stop window" in err and "yields to promptly" in err and "interruption_window" not in err
    assert refusals_main([*base, "--model-voices", "nobody"]) == 2
    assert "espeak-gb-f3" in capsys.readouterr().err
    assert refusals_main(["--prompts", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
