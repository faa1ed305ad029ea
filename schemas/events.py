"""Timed events on the conversation clock: delegation, tool calls and their late results (DESIGN.md §8).

    python -c "from schemas.events import parse_events; print(parse_events([{'kind': 'task_start', 'time_s': 1.3, \
'arguments': {'name': 'convert 20 EUR'}}])[0])"

The vocabulary is Gander's (Omni-Interaction-Agent, Hunyuan team), so data moves both ways:

| kind            | side   | name          | arguments / content                                                       |
|-----------------|--------|---------------|---------------------------------------------------------------------------|
| task_start      | output | task_start    | arguments {"name": task}: the model delegates a background task           |
| task_send       | output | task_send     | arguments {"lane": "main" or "fork", "task": task, ...}: correct / ask it |
| task_resolve    | output | task_resolve  | arguments {"action": cancel, allow_once, allow_session or deny, "task"}   |
| tool_call       | output | the tool      | arguments: any JSON object (a direct, synchronous tool call)              |
| tool_response   | input  | the tool      | content: the call's result (any JSON value)                               |
| worker_delivery | input  | task name     | content, topic "milestone" or "final", status: a report, on its own       |

Output-side events are the model's own acts: targets, placed in the micro-turn that contains their time. Input-side
events arrive (the model did not ask for them at that instant): placed in the micro-turn whose span contains their
arrival, never targets. `task` names the background task an event belongs to (Gander names tasks, it has no ids).

In a bundle, ``"events"`` is an optional list of objects with these keys (seconds on the conversation clock)::

    {"kind": "task_start", "time_s": 2.31, "speaker": "assistant", "name": "task_start",
     "arguments": {"name": "convert 20 EUR to USD"}, "task": "convert 20 EUR to USD"}
    {"kind": "worker_delivery", "time_s": 9.02, "name": "convert 20 EUR to USD", "topic": "final",
     "status": "done", "content": "20 EUR is 21.60 USD", "task": "convert 20 EUR to USD"}

``side`` follows from ``kind``; ``name`` defaults to the kind for task tools and to ``task`` for deliveries;
``speaker`` is who acts as the agent (default: the bundle's first model speaker); events are carried only into
samples where that speaker plays the model. In a sample they are ``events.json`` (`SampleEvent`, times relative to
the window start). The token layout that carries them to the trainer is in schemas/layout.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.shard import record_fields
from schemas.units import microturn_of_seconds, microturn_start_s

TASK_TOOLS = ("task_start", "task_send", "task_resolve")
"""Gander's task tools: the model starts, steers and resolves background work."""
OUTPUT_KINDS = (*TASK_TOOLS, "tool_call")
INPUT_KINDS = ("tool_response", "worker_delivery")
EVENT_KINDS = (*OUTPUT_KINDS, *INPUT_KINDS)
SIDES = ("input", "output")
TASK_LANES = ("main", "fork")
"""task_send lanes: main corrects the running task, fork asks a side question about it."""
RESOLVE_ACTIONS = ("cancel", "allow_once", "allow_session", "deny")
DELIVERY_TOPICS = ("milestone", "final")
"""worker_delivery topics: a progress report, or the result."""


def side_of(kind: str) -> str:
    """'output' for the model's acts (task tools, tool calls), 'input' for arrivals (responses, deliveries)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
    return "output" if kind in OUTPUT_KINDS else "input"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEvent:
    """One event on the conversation clock (times in seconds from the start of the conversation)."""

    kind: str  # one of EVENT_KINDS
    time_s: float  # when the model acts (output) or the result arrives (input)
    name: str  # the tool name (task_start, ..., or the tool), or the delivering task's name
    arguments: Mapping[str, Any] | None = None  # output side: the call's arguments (JSON object)
    content: Any = None  # input side: the result or report (any JSON value)
    task: str | None = None  # the background task it belongs to
    topic: str | None = None  # worker_delivery: milestone | final
    status: str | None = None  # worker_delivery: the worker's status string (e.g. running, done, failed)
    speaker: str | None = None  # who acts as the agent; None: the first model speaker

    @property
    def side(self) -> str:
        return side_of(self.kind)

    def to_dict(self) -> dict[str, Any]:
        """The bundle form (None fields left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["arguments"] = None if self.arguments is None else dict(self.arguments)
        return {k: v for k, v in out.items() if v is not None}


def _check(cond: bool, index: int, message: str) -> None:
    if not cond:
        raise ValueError(f"event #{index}: {message}")


def parse_event(obj: Any, index: int = 0) -> TimelineEvent:
    """One event from its bundle object.

    Raises:
        ValueError: naming the event's index and what is wrong (unknown kind, bad time, a task tool without its
            required arguments, an unknown lane, action or topic, a side that contradicts the kind).
    """
    _check(isinstance(obj, Mapping), index, f"not an object: {obj!r:.80}")
    kind = obj.get("kind")
    _check(kind in EVENT_KINDS, index, f"kind {kind!r} is not one of {EVENT_KINDS}")
    try:
        time_s = float(obj.get("time_s"))
    except (TypeError, ValueError):
        time_s = math.nan
    _check(math.isfinite(time_s) and time_s >= 0, index, f"time_s must be a number >= 0, got {obj.get('time_s')!r}")
    _check(obj.get("side", side_of(kind)) == side_of(kind), index, f"a {kind} is on the {side_of(kind)} side")
    known = {f.name for f in dataclasses.fields(TimelineEvent)} | {"side"}
    unknown = sorted(set(obj) - known)
    _check(not unknown, index, f"unknown keys {unknown}")
    arguments = obj.get("arguments")
    _check(arguments is None or isinstance(arguments, Mapping), index, "arguments must be a JSON object")
    task = obj.get("task")
    if kind in OUTPUT_KINDS:
        _check(arguments is not None, index, f"a {kind} needs 'arguments'")
        _check(obj.get("content") is None, index, f"a {kind} has arguments, not content")
    else:
        _check(arguments is None, index, f"a {kind} has content, not arguments")
    if kind == "task_start":
        _check(isinstance(arguments.get("name"), str), index, "task_start arguments need 'name' (the task)")
        task = task if task is not None else arguments["name"]
    elif kind == "task_send":
        _check(arguments.get("lane") in TASK_LANES, index, f"task_send lane must be one of {TASK_LANES}")
        _check(isinstance(arguments.get("task"), str), index, "task_send arguments need 'task'")
        task = task if task is not None else arguments["task"]
    elif kind == "task_resolve":
        _check(
            arguments.get("action") in RESOLVE_ACTIONS, index, f"task_resolve action must be one of {RESOLVE_ACTIONS}"
        )
        _check(isinstance(arguments.get("task"), str), index, "task_resolve arguments need 'task'")
        task = task if task is not None else arguments["task"]
    topic = obj.get("topic")
    if kind == "worker_delivery":
        _check(topic in DELIVERY_TOPICS, index, f"worker_delivery topic must be one of {DELIVERY_TOPICS}")
        _check(
            isinstance(task, str) or isinstance(obj.get("name"), str), index, "a worker_delivery needs 'task' or 'name'"
        )
    else:
        _check(topic is None, index, "only a worker_delivery has a topic")
    name = obj.get("name")
    if name is None:
        name = kind if kind in TASK_TOOLS else task
    _check(isinstance(name, str) and name != "", index, f"a {kind} needs 'name' (the tool)")
    if kind in TASK_TOOLS:
        _check(name == kind, index, f"a {kind} event's name is {kind!r}, got {name!r}")
    if kind == "worker_delivery" and task is None:
        task = name
    for key in ("task", "status", "speaker"):
        value = task if key == "task" else obj.get(key)
        _check(value is None or isinstance(value, str), index, f"{key} must be a string")
    try:
        json.dumps(obj.get("content"), allow_nan=False)  # NaN / Infinity are not standard JSON: other readers fail
        json.dumps(arguments, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"event #{index}: arguments and content must be standard JSON values: {e}") from None
    return TimelineEvent(
        kind=kind,
        time_s=time_s,
        name=name,
        arguments=None if arguments is None else dict(arguments),
        content=obj.get("content"),
        task=task,
        topic=topic,
        status=obj.get("status"),
        speaker=obj.get("speaker"),
    )


def parse_events(obj: Any) -> tuple[TimelineEvent, ...]:
    """A bundle's ``"events"`` list, sorted by (time, side, kind) in a stable way.

    Raises:
        ValueError: `obj` is not a list, or an event is malformed (see `parse_event`).
    """
    if not isinstance(obj, list):
        raise ValueError(f"'events' must be a list, got {type(obj).__name__}")
    events = [parse_event(e, i) for i, e in enumerate(obj)]
    order = sorted(range(len(events)), key=lambda i: (events[i].time_s, i))
    return tuple(events[i] for i in order)


def event_microturn(time_s: float) -> int:
    """The conversation micro-turn an event at `time_s` is placed in: the one whose span [0.2 k, 0.2 (k + 1)) holds
    it (for an output event: where the model acts; for an input event: where it arrives)."""
    return microturn_of_seconds(time_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleEvent:
    """One entry of events.json: an event placed in a window micro-turn."""

    kind: str  # one of EVENT_KINDS
    side: str  # 'output' (the model acts; a target) | 'input' (an arrival; never a target)
    microturn: int  # window micro-turn that holds time_s
    time_s: float  # seconds from the window start
    name: str
    arguments: Mapping[str, Any] | None
    content: Any
    task: str | None
    topic: str | None
    status: str | None
    target: bool  # True exactly for output-side events

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["arguments"] = None if self.arguments is None else dict(self.arguments)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleEvent:
        return cls(**record_fields(cls, obj, "events.json"))


def sample_event(event: TimelineEvent, *, window_start: int) -> SampleEvent:
    """`event` placed in the window that starts at conversation micro-turn `window_start`."""
    t0 = microturn_start_s(window_start)
    return SampleEvent(
        kind=event.kind,
        side=event.side,
        microturn=event_microturn(event.time_s) - window_start,
        time_s=round(event.time_s - t0, 6),
        name=event.name,
        arguments=None if event.arguments is None else dict(event.arguments),
        content=event.content,
        task=event.task,
        topic=event.topic,
        status=event.status,
        target=event.side == "output",
    )


def event_problems(events: list[SampleEvent], num_microturns: int) -> list[str]:
    """What is wrong with a sample's events: a kind/side mismatch, a target on the input side, a micro-turn outside
    the window's real micro-turns or disagreeing with time_s, events out of time order."""
    problems = []
    for i, e in enumerate(events):
        if e.kind not in EVENT_KINDS:
            problems.append(f"event #{i}: unknown kind {e.kind!r}")
            continue
        if e.side != side_of(e.kind):
            problems.append(f"event #{i}: a {e.kind} on the {e.side} side (expected {side_of(e.kind)})")
        if e.target != (e.side == "output"):
            problems.append(f"event #{i}: target is {e.target} on the {e.side} side")
        if not 0 <= e.microturn < num_microturns:
            problems.append(f"event #{i}: micro-turn {e.microturn} outside the window's {num_microturns}")
        elif microturn_of_seconds(e.time_s + 1e-9) != e.microturn and microturn_of_seconds(e.time_s) != e.microturn:
            problems.append(f"event #{i}: micro-turn {e.microturn} does not hold its time {e.time_s} s")
    times = [e.time_s for e in events]
    if times != sorted(times):
        problems.append("events are not in time order")
    return problems
