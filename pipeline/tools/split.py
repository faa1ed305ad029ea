"""Train/evaluation split of a dataset, disjoint by conversation and by speaker.

    microturn split demo-out/dataset --out split.json --eval_fraction 0.2 --speaker_scope conversation

Conversations that share a speaker are joined into one group (connected components of the conversation-speaker
graph); whole groups go to one side, so no conversation and no speaker is on both sides. Groups are ordered by a
stable hash of (seed, the group's first conversation id) and go to evaluation until it holds `eval_fraction` of
the hours; conversations whose bundle split hint is an evaluation one (eval, test, dev, valid, validation) always go
to evaluation, with their whole group.

Speaker ids in a bundle may be names of people across the corpus (AMI's MEE006) or just labels inside one
recording ("A", "B", "SPEAKER_00"). `speaker_scope="global"` (default) treats equal ids in different conversations
as the same person; `"conversation"` treats them as different people, so the split is then disjoint by conversation
only. When every conversation is connected to every other one, no speaker-disjoint split exists and `split` says so.

split.json holds {"config", "train": {"conversations", "speakers", "keys", "hours"}, "eval": {...}}; with
speaker_scope="conversation" its speakers are written as "{conversation}/{speaker}".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.shard import require_format
from schemas.tables import read_index_rows, read_manifest

logger = logging.getLogger(__name__)

EVAL_HINTS = frozenset({"eval", "test", "dev", "valid", "validation"})
SPEAKER_SCOPES = ("global", "conversation")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationInfo:
    """What the split needs of one conversation: its speakers (original ids), hours of audio and split hint."""

    conversation_id: str
    speakers: frozenset[str]
    duration_s: float
    hint: str = ""
    keys: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    train: tuple[str, ...]
    eval: tuple[str, ...]

    def side_of(self, conversation_id: str) -> str:
        return "eval" if conversation_id in set(self.eval) else "train"


def conversations_from_index(rows: Iterable[Mapping]) -> list[ConversationInfo]:
    """One ConversationInfo per conversation of index rows. The duration is counted once per conversation
    (from its first perspective), not once per perspective."""
    by_conv: dict[str, list[Mapping]] = defaultdict(list)
    for r in rows:
        by_conv[r["conversation_id"]].append(r)
    out = []
    for conv_id, rs in sorted(by_conv.items()):
        first = min(r["perspective"] for r in rs)
        speakers = {r["output_speaker"] for r in rs} | {r["input_speaker"] for r in rs if r["input_speaker"]}
        speakers |= {s for r in rs for s in r["other_speakers"]}
        out.append(
            ConversationInfo(
                conversation_id=conv_id,
                speakers=frozenset(speakers),
                duration_s=sum(r["duration_s"] for r in rs if r["perspective"] == first),
                hint=str(rs[0].get("split") or ""),
                keys=tuple(sorted({r["key"] for r in rs})),  # one row per window and perspective
            )
        )
    return out


def _groups(convs: Sequence[ConversationInfo], speaker_scope: str) -> list[list[ConversationInfo]]:
    """Connected components of conversations linked by a shared speaker (union-find)."""
    parent = list(range(len(convs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[object, int] = {}
    for i, c in enumerate(convs):
        for s in c.speakers:
            node = s if speaker_scope == "global" else (c.conversation_id, s)
            if node in owner:
                parent[find(i)] = find(owner[node])
            else:
                owner[node] = i
    groups: dict[int, list[ConversationInfo]] = defaultdict(list)
    for i, c in enumerate(convs):
        groups[find(i)].append(c)
    return [sorted(g, key=lambda c: c.conversation_id) for g in groups.values()]


def split_conversations(
    convs: Sequence[ConversationInfo], *, eval_fraction: float = 0.1, seed: int = 0, speaker_scope: str = "global"
) -> Split:
    """Assign every conversation to train or eval (see the module docstring).

    Raises:
        ValueError: on a bad fraction or scope, or when the speakers connect all conversations into one group.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if speaker_scope not in SPEAKER_SCOPES:
        raise ValueError(f"speaker_scope must be one of {SPEAKER_SCOPES}, got {speaker_scope!r}")
    if len({c.conversation_id for c in convs}) != len(convs):
        raise ValueError("conversation ids repeat in the input of split_conversations")
    groups = _groups(convs, speaker_scope)
    if len(groups) < 2:
        speakers = sorted({s for c in convs for s in c.speakers})
        raise ValueError(
            f"no split disjoint by speaker exists: the speakers {speakers[:8]} connect all {len(convs)} "
            "conversation(s) into one group. If these speaker ids are only labels inside each recording (not the "
            "same people across conversations), pass speaker_scope='conversation' (--speaker_scope conversation)"
        )

    def rank(g: list[ConversationInfo]) -> str:
        return hashlib.sha256(f"{seed}:{g[0].conversation_id}".encode()).hexdigest()

    total_s = sum(c.duration_s for c in convs)
    target_s = eval_fraction * total_s
    forced = [g for g in groups if any(c.hint.lower() in EVAL_HINTS for c in g)]
    free = sorted((g for g in groups if g not in forced), key=rank)
    eval_groups = list(forced)
    eval_s = sum(c.duration_s for g in forced for c in g)
    for g in free[:-1]:  # the last free group always stays in train, so train is never empty
        g_s = sum(c.duration_s for c in g)
        if not eval_groups or eval_s + g_s <= target_s:
            eval_groups.append(g)
            eval_s += g_s
    eval_ids = sorted(c.conversation_id for g in eval_groups for c in g)
    train_ids = sorted(c.conversation_id for c in convs if c.conversation_id not in set(eval_ids))
    if not train_ids:
        raise ValueError(
            "every conversation is hinted as evaluation (split hint eval/test/dev): nothing is left to train on"
        )
    return Split(train=tuple(train_ids), eval=tuple(eval_ids))


def split_dataset(dataset: str, *, eval_fraction: float = 0.1, seed: int = 0, speaker_scope: str = "global") -> dict:
    """The split of a written dataset as the JSON object that split.json holds."""
    require_format(read_manifest(dataset), dataset)
    convs = conversations_from_index(read_index_rows(dataset))
    if not convs:
        raise ValueError(f"{dataset}: the index has no samples")
    split = split_conversations(convs, eval_fraction=eval_fraction, seed=seed, speaker_scope=speaker_scope)
    by_id = {c.conversation_id: c for c in convs}

    def speaker_ids(i: str) -> set[str]:  # with conversation scope a speaker is (conversation, id)
        return {s if speaker_scope == "global" else f"{i}/{s}" for s in by_id[i].speakers}

    def side(ids: Sequence[str]) -> dict:
        return {
            "conversations": list(ids),
            "speakers": sorted({s for i in ids for s in speaker_ids(i)}),
            "keys": sorted(k for i in ids for k in by_id[i].keys),
            "hours": round(sum(by_id[i].duration_s for i in ids) / 3600.0, 6),
        }

    return {
        "config": {"dataset": dataset, "eval_fraction": eval_fraction, "seed": seed, "speaker_scope": speaker_scope},
        "train": side(split.train),
        "eval": side(split.eval),
    }


def load_split(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    for side in ("train", "eval"):
        if side not in obj or "conversations" not in obj[side]:
            raise ValueError(f"{path}: not a split.json (no {side}.conversations); write one with `microturn split`")
    return obj
