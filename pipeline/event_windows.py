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
from schemas.units import MICROTURN_S


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


def check_timeline(conv: Conversation, num_microturns: int) -> None:
    """Refuse what would otherwise be dropped without a word when the conversation is cut into samples: a
    ``model_speakers`` list naming none of its speakers (no perspective: 0 samples), an event or a target of a
    speaker the conversation does not have, an event or a target due after the audio ends. Called by the job's
    label stage, so such an input is a rejection with its kind and reason.

    Raises:
        BundleError: kind bad_model_speakers, bad_event or bad_target, naming the entry and what is wrong.
    """
    speakers = set(conv.speakers)
    if conv.model_speakers is not None and not speakers & set(conv.model_speakers):
        raise BundleError(
            "bad_model_speakers",
            f"'model_speakers' {list(conv.model_speakers)!r:.80} names none of the speakers {sorted(speakers)!r:.80}",
        )
    for i, e in enumerate(conv.events):
        if e.speaker is not None and e.speaker not in speakers:
            raise BundleError(
                "bad_event", f"event #{i} ({e.kind}) names speaker {e.speaker!r:.40}, not one of {sorted(speakers)}"
            )
        if event_microturn(e.time_s) >= num_microturns:
            raise BundleError(
                "bad_event",
                f"event #{i} ({e.kind} at {e.time_s:.3f} s) lies after the audio ends "
                f"({num_microturns} micro-turns of 0.2 s)",
            )
    end_s = num_microturns * MICROTURN_S
    for t in conv.targets:
        if t.speaker is not None and t.speaker not in speakers:
            raise BundleError(
                "bad_target", f"target {t.id!r:.40} names speaker {t.speaker!r:.40}, not one of {sorted(speakers)}"
            )
        if max(t.due_s, t.start_s) >= end_s:  # a window that merely runs past the end is clipped, not dropped
            raise BundleError(
                "bad_target",
                f"target {t.id!r:.40} is due at {t.due_s:.3f} s (window from {t.start_s:.3f} s), after the audio "
                f"ends ({end_s:.3f} s, {num_microturns} micro-turns of 0.2 s)",
            )


def window_events(events: Sequence[TimelineEvent] | None, start: int, stop: int) -> tuple[SampleEvent, ...] | None:
    """The events in conversation micro-turns [start, stop), placed relative to the window (None stays None)."""
    if events is None:
        return None
    return tuple(sample_event(e, window_start=start) for e in events if start <= event_microturn(e.time_s) < stop)
