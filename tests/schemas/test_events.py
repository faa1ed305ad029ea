"""schemas/events.py: parsing a bundle's events, their micro-turns, their form in a sample, and the sample check.

.venv/bin/python -m pytest -q tests/schemas/test_events.py
"""

from __future__ import annotations

import pytest

from schemas.events import (
    SampleEvent,
    TimelineEvent,
    event_microturn,
    event_problems,
    parse_event,
    parse_events,
    sample_event,
    side_of,
)

START = {"kind": "task_start", "time_s": 2.31, "arguments": {"name": "convert 20 EUR to USD"}}
DELIVERY = {"kind": "worker_delivery", "time_s": 9.02, "name": "convert 20 EUR to USD", "topic": "final",
            "status": "done", "content": "20 EUR is 21.60 USD"}  # fmt: skip


def test_defaults_follow_from_the_kind() -> None:
    start = parse_event(START)
    assert (start.side, start.name, start.task, start.content) == (
        "output",
        "task_start",
        "convert 20 EUR to USD",
        None,
    )
    delivery = parse_event(DELIVERY)
    assert (delivery.side, delivery.name, delivery.task) == ("input", "convert 20 EUR to USD", "convert 20 EUR to USD")
    call = parse_event({"kind": "tool_call", "time_s": 0, "name": "weather", "arguments": {"city": "Oslo"}})
    assert (call.side, call.name, call.task, call.time_s) == ("output", "weather", None, 0.0)
    assert side_of("tool_response") == "input"
    with pytest.raises(ValueError, match="unknown event kind 'wave'"):
        side_of("wave")


def test_to_dict_leaves_out_none_and_parses_back() -> None:
    start = parse_event(START)
    d = start.to_dict()
    assert d == {"kind": "task_start", "time_s": 2.31, "name": "task_start",
                 "arguments": {"name": "convert 20 EUR to USD"}, "task": "convert 20 EUR to USD"}  # fmt: skip
    assert parse_event(d) == start


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("task_start", "event #4: not an object"),
        ({"kind": "wave", "time_s": 1}, "event #4: kind 'wave' is not one of"),
        ({**START, "time_s": -0.1}, "event #4: time_s must be a number >= 0, got -0.1"),
        ({**START, "time_s": "soon"}, "time_s must be a number"),
        ({**START, "side": "input"}, "a task_start is on the output side"),
        ({**START, "colour": "red"}, r"unknown keys \['colour'\]"),
        ({"kind": "task_start", "time_s": 1, "arguments": {}}, "task_start arguments need 'name'"),
        ({"kind": "task_send", "time_s": 1, "arguments": {"lane": "side", "task": "t"}}, "lane must be one of"),
        ({"kind": "task_resolve", "time_s": 1, "arguments": {"action": "maybe", "task": "t"}}, "action must be one"),
        ({"kind": "tool_call", "time_s": 1, "name": "f"}, "a tool_call needs 'arguments'"),
        ({"kind": "tool_response", "time_s": 1, "name": "f", "arguments": {}}, "has content, not arguments"),
        ({**DELIVERY, "topic": "news"}, "topic must be one of"),
        ({**START, "topic": "final"}, "only a worker_delivery has a topic"),
        ({**START, "name": "tool_call"}, "a task_start event's name is 'task_start'"),
        ({**DELIVERY, "content": {1, 2}}, "arguments and content must be standard JSON values"),
    ],
)
def test_malformed_events_name_their_index_and_fault(obj: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_event(obj, 4)


def test_parse_events_sorts_by_time_keeping_the_given_order_on_ties() -> None:
    first = {"kind": "tool_call", "time_s": 1.0, "name": "a", "arguments": {}}
    second = {"kind": "tool_call", "time_s": 1.0, "name": "b", "arguments": {}}
    events = parse_events([DELIVERY, first, second, START])
    assert [e.name for e in events] == ["a", "b", "task_start", "convert 20 EUR to USD"]
    with pytest.raises(ValueError, match="'events' must be a list, got dict"):
        parse_events(START)
    with pytest.raises(ValueError, match="event #1"):
        parse_events([START, {"kind": "wave"}])


def test_events_are_placed_on_the_sample_grid() -> None:
    assert [event_microturn(t) for t in (0.0, 0.19996, 0.2, 0.6, 2.31)] == [0, 0, 1, 3, 11]


def test_sample_event_is_relative_to_its_window() -> None:
    start, delivery = parse_event(START), parse_event(DELIVERY)
    placed = sample_event(start, window_start=10)  # the window starts at 2.0 s
    assert (placed.microturn, placed.time_s, placed.side, placed.target) == (1, 0.31, "output", True)
    assert placed.arguments == {"name": "convert 20 EUR to USD"} and placed.task == "convert 20 EUR to USD"
    arrival = sample_event(delivery, window_start=45)  # 9.0 s
    assert (arrival.microturn, arrival.time_s, arrival.target, arrival.content) == (0, 0.02, False, DELIVERY["content"])
    assert SampleEvent.from_dict(placed.to_dict()) == placed


def test_event_problems_finds_each_fault() -> None:
    good = [sample_event(parse_event(START), window_start=10)]  # micro-turn 1, 0.31 s
    assert event_problems(good, 5) == []
    assert event_problems(good, 1) == ["event #0: micro-turn 1 outside the window's 1"]
    wrong_side = [SampleEvent(**{**good[0].to_dict(), "side": "input", "target": False})]
    assert event_problems(wrong_side, 5) == ["event #0: a task_start on the input side (expected output)"]
    not_target = [SampleEvent(**{**good[0].to_dict(), "target": False})]
    assert event_problems(not_target, 5) == ["event #0: target is False on the output side"]
    moved = [SampleEvent(**{**good[0].to_dict(), "microturn": 2})]
    assert event_problems(moved, 5) == ["event #0: micro-turn 2 does not hold its time 0.31 s"]
    late_first = [SampleEvent(**{**good[0].to_dict(), "time_s": 0.5, "microturn": 2}), good[0]]
    assert event_problems(late_first, 5) == ["events are not in time order"]
    assert event_problems([SampleEvent(**{**good[0].to_dict(), "kind": "wave"})], 5) == [
        "event #0: unknown kind 'wave'"
    ]


def test_timeline_event_side_comes_from_kind() -> None:
    assert TimelineEvent(kind="tool_response", time_s=1.0, name="f", content=3).side == "input"
