"""Score a model's timed words against a dataset's proactive targets (``microturn eval proactive``).

    microturn eval proactive --data /tmp/timed-ds --responses /tmp/timed/truth.jsonl

--data is a dataset the job wrote (targets from the samples' targets.json, tags from its index) or a directory
of input bundles (targets and tags from each bundle.json). --responses is the model's words per conversation,
seconds from the conversation start, either a JSONL file of ``{"conversation_id", "words": [{"text", "start",
"end"}]}`` (the generators' ``truth.jsonl`` has this form) or a directory of ``<conversation_id>.json`` files each
``{"words": [...]}`` (what ``microturn respond`` writes). A conversation without responses is silence.

Matching: the response words and each target's text are normalised (lower case, punctuation dropped, number
words joined into digits: "twenty four" -> "24", "one point five" -> "1.5", "24.0" -> "24"); a target is hit when
its normalised tokens occur in a row in the responses with the first one starting inside the target's window
[start, end] (each response token serves one target). Scores:

- timed and cue categories (and each other category): accuracy = hits / targets per category (content and timing
  both right), macro-averaged over the family's categories;
- ``visual_count``: per clip, the last number the model says at or after the end of the penultimate repetition
  (0 when none) against the number of repetitions: off-by-one accuracy (|error| <= 1) and mean absolute error;
- ``visual_start`` / ``visual_stop``: per clip the temporal IoU of [first "start", first "stop" after it] with
  [start due, stop due]: mean IoU and share of clips with IoU >= 0.5;
- call-out (``visual_appear`` targets, and clips tagged ``callout`` without one, where nothing appears): early-answer
  score: a hit at time t scores 1 when t <= due, falling linearly to --silence_floor at the window end; no hit
  scores 0; on a clip where nothing appears, silence scores --silence_floor (default 0.5) and any call-out 0.
  Accuracy (hit where it appears, silence where it does not) is reported too.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.targets import Target, parse_targets
from schemas.units import microturn_start_s

COUNT, START, STOP, APPEAR = "visual_count", "visual_start", "visual_stop", "visual_appear"
SPECIAL = (COUNT, START, STOP, APPEAR)

_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(kw_only=True)
class Conversation:
    """What the scorer needs of one conversation: its tags and its targets (seconds from its start)."""

    tags: dict[str, str] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)


def _number_text(value: float) -> str:
    return f"{value:g}" if not float(value).is_integer() else str(int(value))


def tokens(words: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """Normalised tokens with the start (seconds) of the word each begins in (see the module docstring)."""
    raw: list[tuple[str, float]] = []
    for w in words:
        for part in re.split(r"[\s\-]+", str(w["text"]).lower()):
            part = re.sub(r"[^\w.]", "", part).strip(".")
            if part:
                raw.append((part, float(w["start"])))
    out: list[tuple[str, float]] = []
    words = [t for t, _ in raw]
    i = 0
    while i < len(raw):
        text, start = raw[i]
        if _NUMERIC.match(text):
            out.append((_number_text(float(text)), start))
            i += 1
            continue
        if text not in _SMALL and text not in _TENS:
            out.append((text, start))
            i += 1
            continue
        current, j = _below_100(words, i)
        if j < len(words) and words[j] == "hundred" and 1 <= current <= 9:
            current, j = current * 100, j + 1
            k = j + 1 if j < len(words) and words[j] == "and" else j
            rest, k = _below_100(words, k)
            if rest:
                current, j = current + rest, k
        value = float(current)
        if j + 1 < len(raw) and raw[j][0] == "point" and raw[j + 1][0] in _SMALL and _SMALL[raw[j + 1][0]] < 10:
            digits, j = "", j + 1
            while j < len(raw) and raw[j][0] in _SMALL and _SMALL[raw[j][0]] < 10:
                digits += str(_SMALL[raw[j][0]])
                j += 1
            value = float(f"{int(value)}.{digits}")
        out.append((_number_text(value), start))
        i = max(j, i + 1)
    return out


def _below_100(words: list[str], i: int) -> tuple[int, int]:
    """A number below 100 in words from words[i] ("seven", "seventeen", "seventy", "seventy seven") and the index
    after it; (0, i) when words[i] is not one."""
    if i >= len(words):
        return 0, i
    if words[i] in _SMALL:
        return _SMALL[words[i]], i + 1
    if words[i] in _TENS:
        if i + 1 < len(words) and 1 <= _SMALL.get(words[i + 1], 0) <= 9:
            return _TENS[words[i]] + _SMALL[words[i + 1]], i + 2
        return _TENS[words[i]], i + 1
    return 0, i


def _expected(text: str) -> list[str]:
    """The normalised tokens of a target's text."""
    return [x for x, _ in tokens([{"text": text, "start": 0.0}])]


def _find(expected: list[str], toks: list[tuple[str, float]], lo: float, hi: float, used: set[int]) -> int | None:
    """Index of the first unused occurrence of `expected` in `toks` starting within [lo, hi]; None if none."""
    n = len(expected)
    for i, (_, start) in enumerate(toks):
        if start > hi + 1e-9:
            break
        if start >= lo - 1e-9 and i not in used and [t for t, _ in toks[i : i + n]] == expected:
            return i
    return None


def _target(t: Mapping[str, Any], t0: float) -> Target:
    """A window's targets.json entry with its times moved from the window's start to the conversation's."""
    return Target(
        id=t["id"],
        family=t["family"],
        category=t["category"],
        text=t["text"],
        due_s=round(t["due_s"] + t0, 6),
        start_s=round(t["start_s"] + t0, 6),
        end_s=round(t["end_s"] + t0, 6),
        speaker=t["speaker"],
        count=t["count"],
        cycle_end_s=None if t["cycle_end_s"] is None else round(t["cycle_end_s"] + t0, 6),
    )


def _dataset_conversations(data: str) -> Iterator[tuple[str, Conversation]]:
    """A dataset's conversations, one at a time: a shard holds every window of a conversation, one after another
    (sorted by conversation key), so a conversation is done when the next one's first window arrives."""
    from schemas.checked_reader import checked_samples

    for conv_id, samples in itertools.groupby(checked_samples(data), key=lambda s: s["meta.json"]["conversation_id"]):
        conv = Conversation()
        for sample in samples:
            meta = sample["meta.json"]
            conv.tags = dict(meta["tags"])
            t0 = microturn_start_s(meta["start_microturn"])
            for t in sample.get("targets.json", []):
                conv.targets[t["id"]] = _target(t, t0)
        yield conv_id, conv


def _bundle_conversations(paths: Sequence[Path]) -> Iterator[tuple[str, Conversation]]:
    for path in paths:
        obj = json.loads(path.read_text(encoding="utf-8"))
        targets = {t.id: t for t in parse_targets(obj.get("targets", []))}
        yield str(obj["id"]), Conversation(tags=dict(obj.get("tags", {})), targets=targets)


def load_conversations(data: str) -> Iterator[tuple[str, Conversation]]:
    """(conversation id, targets and tags) per conversation, read one conversation at a time from a job's dataset
    (its samples' meta.json and targets.json) or from a directory of input bundles (each bundle.json), so memory
    does not grow with the dataset; ``dict(load_conversations(data))`` holds them all.

    Raises:
        ValueError: `data` is neither a dataset nor a directory of bundles (at once, before the first conversation),
            or a conversation id comes twice (two bundles, or windows of one conversation apart in the dataset).
    """
    if os.path.exists(os.path.join(data, "manifest.json")):
        convs = _dataset_conversations(data)
    else:
        paths = sorted(Path(data).glob("**/bundle.json"))
        if not paths:
            raise ValueError(
                f"{data}: neither a dataset (no manifest.json) nor a directory of bundles (no bundle.json)"
            )
        convs = _bundle_conversations(paths)
    return _once_each(convs, data)


def _once_each(convs: Iterable[tuple[str, Conversation]], data: str) -> Iterator[tuple[str, Conversation]]:
    seen: set[str] = set()  # ids only: a conversation is scored once
    for conv_id, conv in convs:
        if conv_id in seen:
            raise ValueError(f"{data}: conversation {conv_id!r} comes twice (two bundles or scattered windows)")
        seen.add(conv_id)
        yield conv_id, conv


def response_words(obj: Any, where: str) -> list[dict[str, Any]]:
    """The checked ``words`` of one response object: a list of {"text": str, "start": s, "end": s} with finite
    times, 0 <= start <= end (``end`` may be left out).

    Raises:
        ValueError: naming `where` (file or file:line), the word and what is wrong.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("words"), list):
        raise ValueError(f"{where}: expected an object with 'words': a list of {{text, start, end}}")
    out = []
    for i, w in enumerate(obj["words"]):
        if not isinstance(w, dict) or not isinstance(w.get("text"), str):
            raise ValueError(f"{where}: word #{i} is not an object with a 'text' string: {w!r:.80}")
        times = [w.get("start"), w.get("end", w.get("start"))]
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in times):
            raise ValueError(f"{where}: word #{i} ({w['text']!r:.40}) needs finite 'start' and 'end' seconds")
        if not 0 <= times[0] <= times[1]:
            raise ValueError(f"{where}: word #{i} ({w['text']!r:.40}) has start {times[0]}, end {times[1]}")
        out.append(w)
    return out


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{where}: not JSON: {e}") from None


def load_responses(path: str) -> dict[str, list[dict[str, Any]]]:
    """Response words per conversation id from a JSONL file or a directory of ``<id>.json`` files.

    Raises:
        ValueError: a file or line that is not JSON, not a response object, or has malformed words (`response_words`).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    if os.path.isdir(path):
        for f in sorted(Path(path).glob("*.json")):
            obj = _json(f.read_text(encoding="utf-8"), str(f))
            words = response_words(obj, str(f))
            out[str(obj.get("conversation_id", f.stem))] = words
        return out
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = _json(line, f"{path}:{lineno}")
            if not isinstance(obj, dict) or "conversation_id" not in obj or "words" not in obj:
                raise ValueError(f"{path}:{lineno}: expected {{'conversation_id', 'words'}}")
            out[str(obj["conversation_id"])] = response_words(obj, f"{path}:{lineno}")
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def score(
    convs: Mapping[str, Conversation] | Iterable[tuple[str, Conversation]],
    responses: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    silence_floor: float = 0.5,
) -> dict[str, Any]:
    """Every score of the module docstring, as plain JSON-able data.

    Args:
        convs: conversation id -> its targets and tags, or (id, conversation) pairs as `load_conversations` streams
            them (read once, one at a time; the scores do not depend on their order).
    """
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # category -> [hits, targets]
    family_of: dict[str, str] = {}
    count_err: list[int] = []
    ious: list[float] = []
    callout: list[tuple[float, bool]] = []  # (early-answer score, decision right)
    n_convs = 0
    for conv_id, conv in convs.items() if isinstance(convs, Mapping) else convs:
        n_convs += 1
        toks = tokens(sorted(responses.get(conv_id, []), key=lambda w: float(w["start"])))
        used: set[int] = set()
        found: dict[str, int | None] = {}
        for t in sorted(conv.targets.values(), key=lambda t: (t.start_s, t.id)):
            expected = _expected(t.text)
            i = _find(expected, toks, t.start_s, t.end_s, used)
            if i is not None:
                used.update(range(i, i + len(expected)))
            found[t.id] = i
            family_of[t.category] = t.family
            hits[t.category][0] += i is not None
            hits[t.category][1] += 1
        by_cat = defaultdict(list)
        for t in conv.targets.values():
            by_cat[t.category].append(t)
        if by_cat[COUNT]:
            count_err.append(_count_error(by_cat[COUNT], toks))
        if by_cat[START] and by_cat[STOP]:
            ious.append(_start_stop_iou(by_cat[START][0].due_s, by_cat[STOP][0].due_s, toks))
        if by_cat[APPEAR]:
            t = by_cat[APPEAR][0]
            callout.append(_callout_answered(t, found[t.id], toks, silence_floor))
        elif "callout" in conv.tags:
            spoke = _find(_expected(conv.tags["callout"]), toks, -math.inf, math.inf, set()) is not None
            callout.append((0.0 if spoke else silence_floor, not spoke))
    return _summary(hits, family_of, n_convs, count_err, ious, callout, silence_floor)


def _count_error(reps: list[Target], toks: list[tuple[str, float]]) -> int:
    """|last number said after the last cycle but one - the true count| of one counting clip (the count itself when
    nothing numeric was said)."""
    reps = sorted(reps, key=lambda t: t.count or 0)
    truth = reps[-1].count or len(reps)
    after = reps[-2].cycle_end_s if len(reps) > 1 and reps[-2].cycle_end_s is not None else 0.0
    said = [float(x) for x, s in toks if s >= after - 1e-9 and _NUMERIC.match(x)]
    return abs(int(round(said[-1])) - truth) if said else truth


def _start_stop_iou(a: float, b: float, toks: list[tuple[str, float]]) -> float:
    """Intersection over union of the true interval [a, b] (s) and the one between the first "start" said and the
    first "stop" after it (0 when either is missing)."""
    said_start = next((s for x, s in toks if x == "start"), None)
    said_stop = next((s for x, s in toks if x == "stop" and said_start is not None and s > said_start), None)
    if said_start is None or said_stop is None:
        return 0.0
    inter = max(0.0, min(b, said_stop) - max(a, said_start))
    return inter / (max(b, said_stop) - min(a, said_start))


def _callout_answered(
    t: Target, i: int | None, toks: list[tuple[str, float]], silence_floor: float
) -> tuple[float, bool]:
    """(early-answer score, decision right) of a clip whose event appears: 1 at its due time, falling linearly to
    `silence_floor` by its end; (0, False) when the call-out was never said (`i`: its first token, or None)."""
    if i is None:
        return 0.0, False
    late = max(0.0, toks[i][1] - t.due_s) / max(t.end_s - t.due_s, 1e-9)
    return 1.0 - (1.0 - silence_floor) * min(late, 1.0), True


def _summary(
    hits: Mapping[str, list[int]],
    family_of: Mapping[str, str],
    n_convs: int,
    count_err: list[int],
    ious: list[float],
    callout: list[tuple[float, bool]],
    silence_floor: float,
) -> dict[str, Any]:
    """`score`'s JSON-able result from its per-category hits and per-clip figures."""
    categories = {
        c: {"family": family_of[c], "targets": n, "hits": h, "accuracy": _ratio(h, n)}
        for c, (h, n) in sorted(hits.items())
    }
    families = {}
    for fam in sorted(set(family_of.values())):
        accs = [v["accuracy"] for c, v in categories.items() if v["family"] == fam and c not in SPECIAL]
        if accs:
            families[fam] = {"macro_accuracy": sum(accs) / len(accs), "categories": len(accs)}
    return {
        "conversations": n_convs,
        "categories": categories,
        "families": families,
        "counting": {
            "clips": len(count_err),
            "off_by_one_accuracy": _ratio(sum(e <= 1 for e in count_err), len(count_err)),
            "mae": _ratio(sum(count_err), len(count_err)),
        },
        "start_stop": {
            "clips": len(ious),
            "mean_iou": _ratio(math.fsum(ious), len(ious)),
            "iou_at_least_0_5": _ratio(sum(x >= 0.5 for x in ious), len(ious)),
        },
        "callout": {
            "clips": len(callout),
            "silence_floor": silence_floor,
            "early_answer_score": _ratio(math.fsum(s for s, _ in callout), len(callout)),
            "accuracy": _ratio(sum(ok for _, ok in callout), len(callout)),
        },
    }
