"""Train/eval split: disjoint by conversation and by speaker, stable, honouring evaluation hints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.tools import cmd_split as split_main
from pipeline.tools.split import ConversationInfo, split_conversations


def _conv(cid: str, *speakers: str, seconds: float = 60.0, hint: str = "train") -> ConversationInfo:
    return ConversationInfo(conversation_id=cid, speakers=frozenset(speakers), duration_s=seconds, hint=hint)


def _disjoint(convs: list[ConversationInfo], split) -> None:
    by_id = {c.conversation_id: c for c in convs}
    assert set(split.train).isdisjoint(split.eval)
    assert set(split.train) | set(split.eval) == set(by_id)
    train_spk = {s for i in split.train for s in by_id[i].speakers}
    eval_spk = {s for i in split.eval for s in by_id[i].speakers}
    assert train_spk.isdisjoint(eval_spk)


def test_groups_sharing_a_speaker_stay_together() -> None:
    # c1-c2 share "bob", c2-c3 share "eve": one group of three; c4..c9 each alone
    convs = [_conv("c1", "ann", "bob"), _conv("c2", "bob", "eve"), _conv("c3", "eve", "fay")]
    convs += [_conv(f"c{i}", f"p{i}a", f"p{i}b") for i in range(4, 10)]
    for seed in range(20):
        split = split_conversations(convs, eval_fraction=0.3, seed=seed)
        _disjoint(convs, split)
        assert {"c1", "c2", "c3"} <= set(split.train) or {"c1", "c2", "c3"} <= set(split.eval)
        assert split.eval and split.train


def test_fraction_seed_and_stability() -> None:
    convs = [_conv(f"c{i:02d}", f"s{i}a", f"s{i}b") for i in range(20)]
    a = split_conversations(convs, eval_fraction=0.25, seed=1)
    assert a == split_conversations(list(reversed(convs)), eval_fraction=0.25, seed=1)  # order does not matter
    assert len(a.eval) == 5  # 20 equal conversations, 25 % of the hours
    assert a != split_conversations(convs, eval_fraction=0.25, seed=2)


def test_eval_hints_force_the_whole_group_into_eval() -> None:
    convs = [_conv("x1", "ann", "bob", hint="test"), _conv("x2", "bob", "cat")]
    convs += [_conv(f"c{i}", f"p{i}a", f"p{i}b") for i in range(8)]
    split = split_conversations(convs, eval_fraction=0.1, seed=0)
    assert {"x1", "x2"} <= set(split.eval)
    _disjoint(convs, split)


def test_no_speaker_disjoint_split_is_an_error_that_names_the_fix() -> None:
    convs = [_conv(f"c{i}", "A", "B") for i in range(5)]
    with pytest.raises(ValueError, match="speaker_scope"):
        split_conversations(convs, eval_fraction=0.2)
    split = split_conversations(convs, eval_fraction=0.2, speaker_scope="conversation")
    assert len(split.eval) == 1 and len(split.train) == 4
    with pytest.raises(ValueError, match="eval_fraction"):
        split_conversations(convs, eval_fraction=1.5, speaker_scope="conversation")


def test_split_main_on_the_demo_dataset(demo_dataset: Path, tmp_path: Path) -> None:
    dataset = str(demo_dataset / "dataset")
    out = tmp_path / "split.json"
    assert split_main([dataset, "--out", str(out)]) == 2  # every demo conversation has speakers A and B
    assert split_main([dataset, "--out", str(out), "--eval_fraction", "0.3", "--speaker_scope", "conversation"]) == 0
    obj = json.loads(out.read_text())
    train, ev = obj["train"], obj["eval"]
    assert ev["conversations"] and train["conversations"]
    assert set(train["conversations"]).isdisjoint(ev["conversations"])
    assert set(train["speakers"]).isdisjoint(ev["speakers"])
    assert set(train["keys"]).isdisjoint(ev["keys"])
    assert all(k.rsplit("_", 2)[0] in ev["conversations"] for k in ev["keys"])
    assert len(train["keys"]) + len(ev["keys"]) == 9  # format 3: one key per window, both perspectives in it
