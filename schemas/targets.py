"""Proactive targets on the timeline (DESIGN.md §8): what the model must say, when, and within which window.

    python -c "from schemas.targets import make_target; print(make_target(id='t0', family='timed', \
category='timed_oneshot', text='10 seconds', due_s=12.0))"

A bundle may carry a ``"targets"`` list (seconds from the conversation start)::

    "targets": [
      {"id": "t0", "family": "timed", "category": "timed_oneshot", "text": "10 seconds have passed",
       "due": 12.3, "start": 12.1, "end": 13.3},                         # window [due - a, due + b]
      {"id": "t3", "family": "visual", "category": "visual_count", "text": "3",
       "due": 5.2, "start": 5.2, "end": 6.2, "count": 3, "cycle_end": 5.2},  # counting: the count and its cycle end
      {"id": "t4", ..., "speaker": "model"}                               # optional: who must say it
    ]

`Target` is one entry, `parse_targets` reads the list (raising `TargetError`, which schemas.bundle turns into a
``bad_target`` BundleError), `target_to_dict` writes it back. In a sample (member ``targets.json``, present only
for conversations that have targets) each target touching the window is a `SampleTarget`: times relative to the
window start, and the window micro-turns of its due time and window (pipeline/targets.py cuts them).

Families and their categories are open strings; the generators in synth/ use FAMILIES and the categories in
CATEGORIES, and the scorer (evals/proactive.py) scores by category.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.shard import record_fields

FAMILIES = ("timed", "cue", "visual")
CATEGORIES = {
    "timed_oneshot": "timed",  # "tell me when N seconds have passed"
    "timed_periodic": "timed",  # "every K seconds until I say stop"
    "timed_elapsed": "timed",  # "how long has it been?"
    "cue_currency": "cue",  # a price in euros -> converted at the stated rate
    "cue_colour": "cue",  # a fruit named -> its colour
    "cue_translate": "cue",  # a foreign word -> the original word
    "visual_count": "visual",  # count repetitions out loud
    "visual_start": "visual",  # say start when the motion starts
    "visual_stop": "visual",  # say stop when it stops
    "visual_appear": "visual",  # call out an object when it appears
}
"""The categories the microturn generators write -> their family."""

DEFAULT_BEFORE_S = 0.2
"""Default window start: this many seconds before the due time (a)."""
DEFAULT_AFTER_S = 1.0
"""Default window end: this many seconds after the due time (b)."""


class TargetError(ValueError):
    """A malformed target; the message names it and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One proactive target. Times in seconds from the conversation start; start_s <= due_s <= end_s."""

    id: str  # unique within the conversation
    family: str  # 'timed' | 'cue' | 'visual' (open)
    category: str  # e.g. 'timed_oneshot' (CATEGORIES)
    text: str  # the expected words (templated)
    due_s: float  # when the model should start saying it
    start_s: float  # window start (due - a)
    end_s: float  # window end (due + b)
    speaker: str | None = None  # who must say it; None: whoever plays the model
    count: int | None = None  # counting: the repetition's number
    cycle_end_s: float | None = None  # counting: when the repetition's cycle ends


def make_target(
    *,
    id: str,
    family: str,
    category: str,
    text: str,
    due_s: float,
    before_s: float = DEFAULT_BEFORE_S,
    after_s: float = DEFAULT_AFTER_S,
    speaker: str | None = None,
    count: int | None = None,
    cycle_end_s: float | None = None,
) -> Target:
    """A target due at `due_s` with the window [due_s - before_s (>= 0), due_s + after_s] (seconds)."""
    if before_s < 0 or after_s < 0:
        raise TargetError(f"target {id!r}: window margins must be >= 0 s, got a = {before_s}, b = {after_s}")
    return Target(
        id=id,
        family=family,
        category=category,
        text=text,
        due_s=round(due_s, 6),
        start_s=round(max(0.0, due_s - before_s), 6),
        end_s=round(due_s + after_s, 6),
        speaker=speaker,
        count=count,
        cycle_end_s=None if cycle_end_s is None else round(cycle_end_s, 6),
    )


def _number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TargetError(f"{where}: {key!r} must be a finite number of seconds, got {value!r}")
    return float(value)


def parse_target(obj: Any, index: int) -> Target:
    """One target from its JSON object (see the module docstring). Raises TargetError naming the problem."""
    where = f"target #{index}"
    if not isinstance(obj, Mapping):
        raise TargetError(f"{where} is not an object: {obj!r:.80}")
    for key in ("id", "family", "category", "text"):
        if not isinstance(obj.get(key), str) or (key != "text" and not obj[key].strip()):
            raise TargetError(f"{where}: {key!r} must be a{' non-empty' if key != 'text' else ''} string")
    where = f"target #{index} ({obj['id']!r})"
    unknown = set(obj) - {"id", "family", "category", "text", "due", "start", "end", "speaker", "count", "cycle_end"}
    if unknown:
        raise TargetError(f"{where}: unknown field(s) {sorted(unknown)}")
    due, start, end = (_number(obj, k, where) for k in ("due", "start", "end"))
    if not 0 <= start <= due <= end:
        raise TargetError(f"{where}: need 0 <= start <= due <= end, got start {start}, due {due}, end {end} s")
    count = obj.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise TargetError(f"{where}: 'count' must be a non-negative integer, got {count!r}")
    cycle_end = obj.get("cycle_end")
    speaker = obj.get("speaker")
    if speaker is not None and not isinstance(speaker, str):
        raise TargetError(f"{where}: 'speaker' must be a string, got {speaker!r}")
    return Target(
        id=obj["id"],
        family=obj["family"],
        category=obj["category"],
        text=obj["text"],
        due_s=due,
        start_s=start,
        end_s=end,
        speaker=speaker,
        count=count,
        cycle_end_s=None if cycle_end is None else _number(obj, "cycle_end", where),
    )


def parse_targets(obj: Any) -> tuple[Target, ...]:
    """The bundle's ``targets`` list, sorted by (due, id). Raises TargetError (not a list, a bad entry, ids repeat)."""
    if not isinstance(obj, list):
        raise TargetError(f"'targets' must be a list of target objects, got {type(obj).__name__}")
    targets = [parse_target(t, i) for i, t in enumerate(obj)]
    ids = [t.id for t in targets]
    if len(set(ids)) != len(ids):
        raise TargetError(f"target ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return tuple(sorted(targets, key=lambda t: (t.due_s, t.id)))


def target_to_dict(t: Target) -> dict[str, Any]:
    """The bundle JSON object of `t` (optional fields only when set)."""
    out: dict[str, Any] = {
        "id": t.id,
        "family": t.family,
        "category": t.category,
        "text": t.text,
        "due": t.due_s,
        "start": t.start_s,
        "end": t.end_s,
    }
    for key, value in (("speaker", t.speaker), ("count", t.count), ("cycle_end", t.cycle_end_s)):
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleTarget:
    """One entry of targets.json: a target whose window or due time touches the sample's window."""

    id: str
    family: str
    category: str
    text: str
    speaker: str  # who must say it (the perspective's model speaker)
    due_s: float  # seconds from the window start (may be < 0 or past the window)
    start_s: float  # window start, seconds from the window start
    end_s: float  # window end, seconds from the window start
    due_microturn: int | None  # window micro-turn containing the due time; None: outside the window
    start_microturn: int  # first window micro-turn the target's window touches (clipped to the window)
    end_microturn: int  # one past the last window micro-turn it touches (clipped)
    count: int | None
    cycle_end_s: float | None  # seconds from the window start

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleTarget:
        """Raises ValueError when `obj` is not an object with exactly these fields."""
        return cls(**record_fields(cls, obj, "targets.json"))

    def problems(self, num_microturns: int) -> list[str]:
        """What is inconsistent: micro-turns outside [0, num_microturns], window order, due micro-turn vs time."""
        out = []
        if not 0 <= self.start_microturn <= self.end_microturn <= num_microturns:
            out.append(
                f"target {self.id!r}: micro-turns {self.start_microturn}..{self.end_microturn} outside "
                f"0..{num_microturns}"
            )
        if not self.start_s <= self.due_s <= self.end_s:
            out.append(f"target {self.id!r}: due {self.due_s} s outside its window [{self.start_s}, {self.end_s}]")
        if self.due_microturn is not None and not 0 <= self.due_microturn < num_microturns:
            out.append(f"target {self.id!r}: due micro-turn {self.due_microturn} outside 0..{num_microturns - 1}")
        return out
