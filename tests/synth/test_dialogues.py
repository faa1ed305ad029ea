"""`synth dialogues`: the pipeline's labels equal the planted events, determinism, disjoint splits, the control."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.synth import dialogues_parser as build_parser
from pipeline.labels import LabelConfig, detect_events, ipus
from schemas.bundle import Word
from schemas.reader import iter_samples
from schemas.sample import LABEL_BITS
from synth import grammar
from synth.dialogues import (
    DEFAULT_HELDOUT_VOICES,
    DialogueConfig,
    make_dialogues,
    turn_text,
    voice_pool,
)
from synth.engines import VOICE_BANK

SHORT = DialogueConfig(duration_s=(18.0, 22.0))
PLANTED_TO_LABEL = {  # (planted type, by the model?) -> label name in that perspective
    ("backchannel", False): "backchannel",
    ("backchannel", True): "output_backchannel",
    ("interruption", False): "interruption",
    ("interruption", True): "output_interruption",
    ("yield", False): "yield_to_input",
    ("yield", True): "yield_to_output",
}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _words(bundle: Path) -> list[Word]:
    return [
        Word(text=w["text"], start_s=w["start"], end_s=w["end"], speaker=w["speaker"])
        for w in _load(bundle / "bundle.json")["words"]
    ]


@pytest.fixture(scope="module")
def natural(tmp_path_factory) -> list[Path]:
    return make_dialogues(tmp_path_factory.mktemp("natural"), 3, seed=7, config=SHORT)


def test_planted_events_are_what_the_label_rules_find(natural):
    counts: Counter = Counter()
    for d in natural:
        planted = _load(d / "planted.json")
        units = ipus(["A", "B"], words=_words(d), segments=None, config=LabelConfig())
        found = [(e.kind, e.by, e.of, e.start, e.stop_latency_s) for e in detect_events(units, LabelConfig())]
        want = [
            (e["type"], e["by"], e["of"], round(e["start_s"] * 16000), e.get("stop_latency_s"))
            for e in planted["events"]
        ]
        assert found == want, d.name
        # every planted pause is a silence between two IPUs of its speaker that nobody fills
        for p in planted["pauses"]:
            assert 0.4 <= p["end_s"] - p["start_s"] <= 1.5 + 1e-6
            ends = {u.end for u in units if u.speaker == p["speaker"]}
            starts = {u.start for u in units if u.speaker == p["speaker"]}
            assert round(p["start_s"] * 16000) in ends and round(p["end_s"] * 16000) in starts
            assert not any(u.start < p["end_s"] * 16000 and u.end > p["start_s"] * 16000 for u in units)
            counts["pause"] += 1
        counts.update(e["type"] for e in planted["events"])
    assert counts["yield"] >= 6 and counts["pause"] >= 4 and counts["backchannel"] >= 2, counts


def test_job_labels_equal_planted_events(natural, tmp_path):
    from pipeline.job import run

    bundles = natural[:2]
    run(["--input", str(bundles[0].parent), "--output", str(tmp_path / "ds")])
    per: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for s in iter_samples(str(tmp_path / "ds")):
        meta = s["meta.json"]
        key = (meta["conversation_id"], meta["speakers"]["output"])
        per.setdefault(key, {})[meta["start_microturn"]] = s["labels.npy"][: meta["num_microturns"]]
    checked: Counter = Counter()
    for d in natural:
        planted = _load(d / "planted.json")
        for model in ("A", "B"):
            parts = per[(d.name, model)]
            labels = np.concatenate([parts[k] for k in sorted(parts)])
            expected: dict[str, set[int]] = {name: set() for name in PLANTED_TO_LABEL.values()}
            for e in planted["events"]:
                name = PLANTED_TO_LABEL.get((e["type"], e["by"] == model))
                if name is not None:
                    expected[name].add(int(e["start_s"] // 0.2))
            for name, mts in expected.items():
                got = {int(i) for i in np.nonzero(labels & LABEL_BITS[name])[0]}
                assert got == mts, (d.name, model, name)
                checked[name] += len(mts)
            speech = labels & (LABEL_BITS["input_speech"] | LABEL_BITS["output_speech"])
            for p in planted["pauses"]:  # micro-turns wholly inside a pause: silence, no event
                inside = range(int(np.ceil(p["start_s"] / 0.2)), int(p["end_s"] // 0.2))
                assert all(speech[k] == 0 and labels[k] == 0 for k in inside), (d.name, p)
                checked["pause"] += 1
    assert all(checked[n] >= 1 for n in ("yield_to_input", "yield_to_output", "backchannel", "pause")), checked


def test_same_seed_same_bytes(natural, tmp_path):
    again = make_dialogues(tmp_path, 1, seed=7, config=SHORT)
    a, b = natural[0], again[0]
    assert a.name == b.name
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) == ["A.wav", "B.wav", "bundle.json", "planted.json"]
    for name in names:
        if name == "bundle.json":  # track paths name the directory; everything else is the same
            x, y = _load(a / name), _load(b / name)
            x.pop("tracks"), y.pop("tracks")
            assert x == y
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    other = make_dialogues(tmp_path / "o", 1, seed=8, config=SHORT)[0]
    assert (other / "A.wav").read_bytes() != (a / "A.wav").read_bytes()


def test_word_times_line_up_with_energy(natural):
    d = natural[0]
    words = _load(d / "bundle.json")["words"]
    for s in ("A", "B"):
        pcm, rate = sf.read(d / f"{s}.wav", dtype="float32")
        assert rate == 16000
        inside = np.zeros(len(pcm), bool)
        for w in words:
            if w["speaker"] == s:
                a, b = round(w["start"] * rate), round(w["end"] * rate)
                assert np.sqrt(np.mean(pcm[a:b] ** 2)) > 0.01, w  # sound inside each word
                inside[a:b] = True
        assert np.abs(pcm[~inside]).max() < 0.2  # outside words: at most quiet transitions


def test_voice_and_topic_splits_are_disjoint(tmp_path):
    train, held = voice_pool("train"), voice_pool("heldout")
    assert {v.name for v in train}.isdisjoint({v.name for v in held})
    assert {v.name for v in held} == set(DEFAULT_HELDOUT_VOICES) and len(train) >= 10 and len(VOICE_BANK) >= 12
    assert {v.engine for v in VOICE_BANK} == {"espeak-ng", "flite", "festival"}
    custom = voice_pool("heldout", ["fl-awb", "es-us-m3"])
    assert {v.name for v in custom} == {"fl-awb", "es-us-m3"}
    assert set(grammar.TRAIN_TOPICS).isdisjoint(grammar.HELDOUT_TOPICS)
    train_words = set().union(*(grammar.content_words(grammar.TOPICS[t]) for t in grammar.TRAIN_TOPICS))
    held_words = set().union(*(grammar.content_words(grammar.TOPICS[t]) for t in grammar.HELDOUT_TOPICS))
    assert train_words.isdisjoint(held_words), train_words & held_words
    (d,) = make_dialogues(tmp_path, 1, seed=1, split="heldout", config=SHORT)
    synth = _load(d / "bundle.json")["synth"]
    assert _load(d / "bundle.json")["split"] == "heldout"  # the bundle's own split hint says so too
    assert set(synth["speaker_voices"].values()) <= set(DEFAULT_HELDOUT_VOICES)
    assert synth["topic"] in grammar.HELDOUT_TOPICS
    text = {w["text"] for w in _load(d / "bundle.json")["words"]}
    assert not text & train_words
    assert _load(tmp_path / "recipe.json")["config"]["pause_s"] == [0.4, 1.5]


def test_control_chunk_endings_are_identical_in_form(tmp_path):
    dirs = make_dialogues(tmp_path, 2, seed=3, cues="none", config=SHORT)
    ends: Counter = Counter()
    for d in dirs:
        for c in _load(d / "planted.json")["chunks"]:
            ends[c["ends"], c["final"]] += 1
    assert {f for (e, f) in ends if e != "interrupted"} == {"."}, ends
    assert ends["pause", "."] >= 2 and ends["yield", "."] >= 2
    # and the text of a chunk does not depend on what follows it: the same generator for both
    rng_a, rng_b = random.Random(0), random.Random(0)
    topic = grammar.TOPICS["cooking"]
    cfg = DialogueConfig(long_turn_p=1.0, pauses_per_long_turn=(2, 2))
    chunks = turn_text(rng_a, topic, "none", cfg, answer=False, interrupting=False)
    assert [c.ends for c in chunks] == ["pause", "pause", "yield"]
    assert all(c.clauses[-1].endswith(".") and not c.clauses[-1].endswith(",.") for c in chunks)
    natural = turn_text(rng_b, topic, "natural", cfg, answer=False, interrupting=False)
    assert [c.clauses[-1][-1] for c in natural[:-1]] == [",", ","]  # natural: continuation before a pause


def test_natural_pauses_follow_incomplete_clauses(natural):
    finals: Counter = Counter()
    for d in natural:
        for c in _load(d / "planted.json")["chunks"]:
            finals[c["ends"], c["final"]] += 1
            if c["ends"] == "pause":
                assert c["final"] == "," and c["text"].split()[-1].strip(",") in grammar.FUNCTION_WORDS | {
                    f.strip(",").split()[-1] for f in grammar.FILLERS
                }, c
    assert finals["yield", "."] + finals["yield", "?"] >= 3


def test_at_least_ten_thousand_distinct_utterances():
    rng = random.Random(0)
    cfg = DialogueConfig()
    seen = set()
    for i in range(8000):
        topic = grammar.TOPICS[grammar.TRAIN_TOPICS[i % len(grammar.TRAIN_TOPICS)]]
        for c in turn_text(rng, topic, "natural", cfg, answer=i % 3 == 0, interrupting=False):
            seen.add(" ".join(c.clauses))
    assert len(seen) >= 10_000, len(seen)


def test_cli_flags_come_from_the_config():
    args = build_parser().parse_args(["--out", "x", "--pause_s", "0.5,1.0", "--interrupt_p", "0.3"])
    assert args.pause_s == (0.5, 1.0) and args.interrupt_p == 0.3 and args.yield_gap_s == (0.1, 0.6)
    with pytest.raises(ValueError, match="IPU gap"):
        DialogueConfig(pause_s=(0.2, 1.0))


def test_natural_pauses_can_end_in_a_filled_pause_and_the_control_never_does():
    cfg = DialogueConfig(long_turn_p=1.0, pauses_per_long_turn=(2, 2), pause_filler_p=1.0)
    topic = grammar.TOPICS["cooking"]
    rng_n, rng_c = random.Random(1), random.Random(1)
    ends_n, ends_c = Counter(), Counter()
    for _ in range(40):
        for c in turn_text(rng_n, topic, "natural", cfg, answer=False, interrupting=False)[:-1]:
            ends_n[c.clauses[-1]] += 1
            assert c.clauses[-1] in grammar.FILLERS, c  # a hesitation, or the fallback filler
        for c in turn_text(rng_c, topic, "none", cfg, answer=False, interrupting=False)[:-1]:
            ends_c[c.clauses[-1] in grammar.HESITATIONS] += 1
    assert sum(ends_n[h] for h in grammar.HESITATIONS) >= 48, ends_n  # 80 pauses; the rest: no function word
    assert ends_c[True] == 0 and ends_c[False] == 80


def _event_levels_db(dirs: list[Path], seconds: float = 0.25) -> dict[str, list[float]]:
    """Level (dB RMS) of the first `seconds` of every interruption and backchannel, by event type."""
    got: dict[str, list[float]] = {"interruption": [], "backchannel": []}
    for d in dirs:
        tracks = {s: sf.read(d / f"{s}.wav", dtype="float32")[0] for s in ("A", "B")}
        for e in _load(d / "planted.json")["events"]:
            if e["type"] in got and e.get("intent") != "overlapped_yield":
                x = tracks[e["by"]][int(e["start_s"] * 16000) : int((e["start_s"] + seconds) * 16000)]
                got[e["type"]].append(float(20 * np.log10(np.sqrt(np.mean(x * x)))))
    return got


@pytest.mark.parametrize("cues", ["natural", "none"])
def test_interruptions_are_louder_and_backchannels_softer_with_natural_cues(tmp_path, cues):
    cfg = DialogueConfig(duration_s=(30.0, 34.0), interrupt_p=0.5, backchannel_p=0.7)
    flat = dataclasses.replace(cfg, interrupt_gain_db=0.0, backchannel_gain_db=0.0)
    got = _event_levels_db(make_dialogues(tmp_path / "gain", 2, seed=5, cues=cues, config=cfg))
    ref = _event_levels_db(make_dialogues(tmp_path / "flat", 2, seed=5, cues=cues, config=flat))
    assert len(got["interruption"]) >= 2 and len(got["backchannel"]) >= 2, got
    up = np.array(got["interruption"]) - np.array(ref["interruption"])
    down = np.array(got["backchannel"]) - np.array(ref["backchannel"])
    if cues == "natural":  # +6 dB (the soft limiter takes a little off loud onsets) and -6 dB
        assert np.all((up > 4.5) & (up < 6.01)) and np.allclose(down, -6.0, atol=0.01), (up, down)
    else:  # the control: one level for everything
        assert np.all(up == 0) and np.all(down == 0), (up, down)


def test_speed_perturbation_changes_only_the_voices_and_is_recorded(natural, tmp_path):
    cfg = dataclasses.replace(SHORT, speed_perturb=(0.85, 1.15))
    perturbed = make_dialogues(tmp_path / "p", 1, seed=7, config=cfg)[0]
    again = make_dialogues(tmp_path / "q", 1, seed=7, config=cfg)[0]
    plain, p = _load(natural[0] / "bundle.json")["synth"], _load(perturbed / "bundle.json")["synth"]
    assert p["speaker_voices"] == plain["speaker_voices"] and p["topic"] == plain["topic"]
    assert "speaker_speeds" not in plain
    assert set(p["speaker_speeds"]) == {"A", "B"}
    assert all(0.85 <= s <= 1.15 for s in p["speaker_speeds"].values())
    assert p["config"]["speed_perturb"] == [0.85, 1.15]
    assert (perturbed / "A.wav").read_bytes() == (again / "A.wav").read_bytes()
    assert (perturbed / "A.wav").read_bytes() != (natural[0] / "A.wav").read_bytes()
    with pytest.raises(ValueError, match="speed_perturb"):
        DialogueConfig(speed_perturb=(0.2, 1.0))
