"""Place a conversation's timed events (schemas/events.py) into the windows of one perspective.

    python -c "from pipeline.event_windows import window_events; print(window_events((), 0, 150))"

Events belong to the agent: the event's ``speaker``, or the bundle's first model speaker. They are carried only into
the samples where the agent plays the model (``output``); other perspectives get an empty events.json. Output-side
events (task_start, task_send, task_resolve, tool_call) sit in the micro-turn that holds their time and are targets;
input-side arrivals (tool_response, worker_delivery) sit in the micro-turn whose span holds their arrival and are
never targets. An event after the audio ends is a rejection (kind ``bad_event``), never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.bundle import BundleError, Conversation
from schemas.events import SampleEvent, TimelineEvent, event_microturn, sample_event


def agent_speaker(conv: Conversation) -> str | None:
    """Who acts as the agent when an event names no speaker: the first model speaker (or first speaker)."""
    allowed = [s for s in (conv.model_speakers or conv.speakers) if s in conv.speakers]
    return allowed[0] if allowed else None


def perspective_events(conv: Conversation, output: str, num_microturns: int) -> tuple[TimelineEvent, ...] | None:
    """The events of `conv` seen with `output` playing the model; None when the bundle has no events.

    Raises:
        BundleError: (kind bad_event) an event lies after the conversation's last micro-turn.
    """
    if not conv.events:
        return None
    default = agent_speaker(conv)
    for i, e in enumerate(conv.events):
        if event_microturn(e.time_s) >= num_microturns:
            raise BundleError(
                "bad_event",
                f"event #{i} ({e.kind} at {e.time_s:.3f} s) lies after the audio ends "
                f"({num_microturns} micro-turns of 0.2 s)",
            )
    return tuple(e for e in conv.events if (e.speaker or default) == output)


def window_events(events: Sequence[TimelineEvent] | None, start: int, stop: int) -> tuple[SampleEvent, ...] | None:
    """The events in conversation micro-turns [start, stop), placed relative to the window (None stays None)."""
    if events is None:
        return None
    return tuple(sample_event(e, window_start=start) for e in events if start <= event_microturn(e.time_s) < stop)
