"""pipeline/event_windows.py: a conversation's events carried to the agent's perspective and into its windows.

.venv/bin/python -m pytest -q tests/pipeline/test_event_windows.py
"""

from __future__ import annotations

import pytest

from pipeline.event_windows import agent_speaker, perspective_events, window_events
from schemas.bundle import BundleError, Conversation, Track
from schemas.events import parse_events

EVENTS = [
    {"kind": "task_start", "time_s": 0.5, "arguments": {"name": "book a table"}},  # micro-turn 2
    {"kind": "worker_delivery", "time_s": 1.9, "name": "book a table", "topic": "final", "content": "booked"},  # 9
    {"kind": "tool_call", "time_s": 2.0, "name": "lamp", "arguments": {"on": True}, "speaker": "user"},  # 10
]


def conversation(*, events: list[dict], model_speakers: tuple[str, ...] | None = ("bot",)) -> Conversation:
    tracks = (Track(speaker="user", path=None), Track(speaker="bot", path=None))
    return Conversation(
        id="c", origin="test", tracks=tracks, model_speakers=model_speakers, events=parse_events(events)
    )


def test_the_agent_is_the_first_model_speaker_or_the_first_speaker() -> None:
    assert agent_speaker(conversation(events=[])) == "bot"
    assert agent_speaker(conversation(events=[], model_speakers=None)) == "user"
    assert agent_speaker(conversation(events=[], model_speakers=("nobody",))) is None


def test_events_go_to_the_perspective_of_their_speaker() -> None:
    conv = conversation(events=EVENTS)
    bot = perspective_events(conv, "bot", 20)
    assert bot is not None and [e.name for e in bot] == ["task_start", "book a table"]
    user = perspective_events(conv, "user", 20)
    assert user is not None and [e.name for e in user] == ["lamp"]
    assert perspective_events(conversation(events=[]), "bot", 20) is None


def test_an_event_after_the_audio_is_a_rejection() -> None:
    conv = conversation(events=EVENTS)
    assert perspective_events(conv, "bot", 11) is not None  # the last event is in micro-turn 10
    with pytest.raises(BundleError, match=r"event #2 \(tool_call at 2.000 s\) lies after the audio ends") as e:
        perspective_events(conv, "bot", 10)
    assert e.value.kind == "bad_event"


def test_window_events_places_them_relative_to_the_window() -> None:
    bot = perspective_events(conversation(events=EVENTS), "bot", 20)
    assert window_events(bot, 0, 5) is not None
    (start,) = window_events(bot, 0, 5)
    assert (start.kind, start.microturn, start.time_s, start.target) == ("task_start", 2, 0.5, True)
    (delivery,) = window_events(bot, 5, 10)
    assert (delivery.kind, delivery.microturn, delivery.time_s, delivery.target) == ("worker_delivery", 4, 0.9, False)
    assert window_events(bot, 10, 15) == ()
    assert window_events(None, 0, 5) is None
