"""Synthesised delegation conversations: the model hands a task to a background worker, keeps talking, and weaves the
result in when the user is quiet (DESIGN.md §8; Gander's event vocabulary, schemas/events.py).

    python -c "from synth.agent import make_agent_bundles; print(make_agent_bundles('/tmp/microturn-agent', count=2))"

Each conversation (speakers ``user`` and ``assistant``; the assistant is the model) follows one script:

1. the user asks for something that needs a deterministic offline tool (`TOOLS`: currency conversion at a fixed
   rate, arithmetic, a lookup table, a timer, a report that takes 5-20 s);
2. the assistant acknowledges and delegates: ``task_start`` {name} at the end of its acknowledgement (label
   ``delegate``);
3. meanwhile the user asks something unrelated and the assistant answers at once;
4. a ``worker_delivery`` milestone and then the final result arrive 2-20 s after the delegation (label ``arrive``,
   input side; the report 5-20 s);
5. the assistant weaves the result in at the first moment at or after the arrival where the user has been silent
   for >= 0.4 s and the assistant is not speaking (never while the user holds the floor); label ``weave`` spans
   from that moment to the end of the woven sentence: the target window.

Variants (drawn per conversation): ``plain``; ``correct_send`` (the user corrects the request; ``task_send`` lane
main); ``correct_restart`` (``task_resolve`` cancel, then a new ``task_start``); ``side_question`` (the user asks
about the running task; ``task_send`` lane fork, answered by a milestone); ``cancel`` (the user cancels:
``task_resolve`` cancel, no final, no weave). ``planted.json`` holds the events and labels as planted, with times
in seconds. Same seed, same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.bundle import Annotation
from synth.bundle_writer import write_bundle
from synth.planner import BASE_RULES, TimelinePlanner, Utterance
from synth.tts import TTSBackend, Voice

USER, AGENT = "user", "assistant"
VOICES = {
    USER: Voice(voice_id=USER, engine_voice="en-us+m3", rate_wpm=165, pitch=35),
    AGENT: Voice(voice_id=AGENT, engine_voice="en+f3", rate_wpm=180, pitch=70),
}
RULES: dict[str, Any] = {**BASE_RULES, "reply_gap_s": (0.35, 0.8), "weave_silence_s": 0.4, "react_s": (0.05, 0.2)}
"""BASE_RULES plus: gap before a reply; how long the user must have been silent before a weave; the delegation
follows the acknowledgement by `react_s`."""
VARIANTS = ("plain", "correct_send", "correct_restart", "side_question", "cancel")
EUR_USD = 1.08
"""The fixed rate of the currency tool."""
CAPITALS = {"france": "paris", "japan": "tokyo", "kenya": "nairobi", "peru": "lima", "canada": "ottawa"}
SMALL_TALK = (
    ("what day comes after monday", "tuesday of course"),
    ("how many legs does a spider have", "eight legs"),
    ("what colour is the sky", "usually blue"),
    ("is it cold in winter", "yes mostly"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One tool request: what the user says, the task, and what the worker delivers."""

    ask: str  # the user's request
    ack: str  # the assistant's acknowledgement
    name: str  # the task's name (Gander's task_start {name})
    milestone: str  # progress report content
    result: str  # the final delivery's content
    weave: str  # what the assistant says with the result
    delay_s: tuple[float, float]  # final delivery after the delegation


def currency(rng: random.Random) -> Task:
    amount = rng.choice((10, 20, 50, 80))
    value = f"{amount * EUR_USD:.2f}"
    return Task(
        ask=f"can you convert {amount} euros to dollars",
        ack="sure let me check",
        name=f"convert {amount} EUR to USD",
        milestone="rate found",
        result=f"{amount} EUR = {value} USD",
        weave=f"by the way {amount} euros is {value.replace('.', ' point ')} dollars",
        delay_s=(2.0, 8.0),
    )


def arithmetic(rng: random.Random) -> Task:
    a, b = rng.randint(12, 49), rng.randint(3, 9)
    return Task(
        ask=f"what is {a} times {b}",
        ack="one moment",
        name=f"compute {a} * {b}",
        milestone="computing",
        result=str(a * b),
        weave=f"so {a} times {b} is {a * b}",
        delay_s=(2.0, 5.0),
    )


def lookup(rng: random.Random) -> Task:
    country = rng.choice(sorted(CAPITALS))
    return Task(
        ask=f"look up the capital of {country}",
        ack="okay looking it up",
        name=f"lookup capital {country}",
        milestone="table opened",
        result=CAPITALS[country],
        weave=f"the capital of {country} is {CAPITALS[country]}",
        delay_s=(2.0, 6.0),
    )


def timer(rng: random.Random) -> Task:
    seconds = rng.randint(6, 14)
    return Task(
        ask=f"set a timer for {seconds} seconds",
        ack="timer started",
        name=f"timer {seconds} s",
        milestone="halfway",
        result="timer done",
        weave="your timer is done",
        delay_s=(float(seconds), float(seconds)),
    )


def report(rng: random.Random) -> Task:
    topic = rng.choice(("sales", "weather", "traffic"))
    return Task(
        ask=f"write me a short {topic} report",
        ack="sure I will draft it",
        name=f"report {topic}",
        milestone="draft half done",
        result=f"{topic} report: all figures steady",
        weave=f"your {topic} report is ready and all figures are steady",
        delay_s=(5.0, 20.0),
    )


TOOLS: dict[str, Callable[[random.Random], Task]] = {
    "currency": currency,
    "arithmetic": arithmetic,
    "lookup": lookup,
    "timer": timer,
    "report": report,
}


class AgentPlanner(TimelinePlanner):
    """Turn-by-turn layout: user and assistant never overlap; the clock `t` is where the next utterance may start."""

    def __init__(self, backend: TTSBackend, rng: random.Random) -> None:
        super().__init__({USER: backend, AGENT: backend}, VOICES, rng, RULES)
        self.utterances: list[Utterance] = []
        self.t = self.uniform("lead_in_s")

    def say(self, speaker: str, text: str, *, at: int | None = None) -> Utterance:
        start = self.off_grid(self.t + self.uniform("reply_gap_s") if at is None else at)
        u = self.speak(speaker, [text.split()], start)
        self.utterances.append(u)
        self.t = u.end
        return u

    def weave_point(self, arrival: int) -> int:
        """The first sample >= `arrival` at which the user has been silent >= weave_silence_s and nobody speaks,
        given that everything laid out so far ends by `self.t` (the arrival is drawn so that no earlier gap
        qualifies; see `plan_agent`)."""
        need = self.samples(self.rules["weave_silence_s"])
        user_end = max((u.end for u in self.utterances if u.speaker == USER), default=0)
        return max(arrival, self.t, user_end + need)


def _event(kind: str, time_s: float, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "time_s": round(time_s, 4), **kw}


@dataclass
class _Delegation:
    """A delegation conversation being laid out: the planner, the task, and the events and labels planted so far
    (times in seconds from the conversation's start)."""

    p: AgentPlanner
    rng: random.Random
    task: Task
    current: str  # the name of the task running now (a restart renames it)
    t_start: float  # seconds: when the running task started
    events: list[dict[str, Any]] = field(default_factory=list)  # events.json entries, in the order planted
    labels: list[dict[str, Any]] = field(default_factory=list)  # label spans (delegate, arrive, weave)


def _delegate(p: AgentPlanner, rng: random.Random, task: Task) -> _Delegation:
    """The user asks, the assistant acknowledges and starts the task a reaction time (s) after."""
    p.say(USER, task.ask, at=p.t)
    ack = p.say(AGENT, task.ack)
    t_start = p.seconds(ack.end) + rng.uniform(*RULES["react_s"])
    d = _Delegation(p=p, rng=rng, task=task, current=task.name, t_start=t_start)
    d.events.append(_event("task_start", t_start, name="task_start", arguments={"name": task.name}, task=task.name))
    d.labels.append({"label": "delegate", "start_s": p.seconds(ack.start), "end_s": t_start})
    return d


def _correct(d: _Delegation, variant: str) -> None:
    """The user changes the task: the assistant sends the change (correct_send) or cancels and restarts it under
    a new name (correct_restart), 0.1 s after its reply."""
    p, current = d.p, d.current
    p.say(USER, "actually make it quick please")
    reply = p.say(AGENT, "okay updating the task")
    t = p.seconds(reply.end) + 0.1
    if variant == "correct_send":
        args = {"lane": "main", "task": current, "message": "make it quick"}
        d.events.append(_event("task_send", t, name="task_send", arguments=args, task=current))
    else:
        args = {"action": "cancel", "task": current}
        d.events.append(_event("task_resolve", t, name="task_resolve", arguments=args, task=current))
        d.current = current = f"{d.task.name} quick"
        d.events.append(_event("task_start", t + 0.05, name="task_start", arguments={"name": current}, task=current))
        d.t_start = t + 0.05


def _side_question(d: _Delegation) -> None:
    """The user asks how long it takes: the assistant forks a question to the worker, answered 0.5-1.5 s later."""
    p, current = d.p, d.current
    p.say(USER, "how long will that take")
    reply = p.say(AGENT, "let me ask")
    t = p.seconds(reply.end) + 0.1
    args = {"lane": "fork", "task": current, "message": "how long will it take"}
    d.events.append(_event("task_send", t, name="task_send", arguments=args, task=current))
    fork_reply = {"name": current, "task": current, "topic": "milestone", "status": "running"}
    d.events.append(_event("worker_delivery", t + d.rng.uniform(0.5, 1.5), content="a few more seconds", **fork_reply))


def _small_talk(d: _Delegation, variant: str) -> float:
    """An unrelated exchange while the task runs; returns when (s) the final result arrives."""
    p, rng = d.p, d.rng
    question, answer = rng.choice(SMALL_TALK)
    p.say(USER, question)
    answered = p.say(AGENT, answer)
    # The result arrives after the answer to the unrelated question (a weave point before it would have come
    # first), or while the user goes on talking: then the weave waits for >= 0.4 s of the user's silence.
    talk_on = variant != "cancel" and rng.random() < 0.5
    t_final = max(d.t_start + rng.uniform(*d.task.delay_s), p.seconds(answered.end) + 0.05)
    if talk_on:
        more = p.say(USER, "and I also need to buy some bread later today")
        t_final = max(d.t_start + 2.0, rng.uniform(p.seconds(more.start) + 0.1, p.seconds(more.end) - 0.1))
    return t_final


def _cancel(d: _Delegation) -> None:
    """The user cancels the task; the assistant resolves it 0.1 s after its reply."""
    p = d.p
    p.say(USER, "never mind cancel that")
    reply = p.say(AGENT, "okay cancelled")
    t = p.seconds(reply.end) + 0.1
    args = {"action": "cancel", "task": d.current}
    d.events.append(_event("task_resolve", t, name="task_resolve", arguments=args, task=d.current))
    p.say(USER, "okay thanks anyway I will ask again later")  # time for the event's tokens to spill


def _deliver(d: _Delegation, t_final: float) -> None:
    """The result arrives at `t_final` (s) and the assistant weaves it in at the first quiet moment."""
    p = d.p
    d.events.append(
        _event(
            "worker_delivery",
            t_final,
            name=d.current,
            task=d.current,
            topic="final",
            status="done",
            content=d.task.result,
        )
    )
    d.labels.append({"label": "arrive", "start_s": round(t_final, 4), "end_s": round(t_final, 4)})
    onset = p.weave_point(math.ceil(round(t_final, 4) * p.rate))
    woven = p.say(AGENT, d.task.weave, at=onset)
    d.labels.append({"label": "weave", "start_s": p.seconds(onset), "end_s": p.seconds(woven.end)})
    p.say(USER, "thanks")


def plan_agent(backend: TTSBackend, rng: random.Random, *, variant: str, tool: str) -> tuple[Any, dict[str, Any]]:
    """One delegation conversation: (timeline, planted) where planted = {"events", "labels", "variant", "tool"}."""
    p = AgentPlanner(backend, rng)
    d = _delegate(p, rng, TOOLS[tool](rng))
    if variant in ("correct_send", "correct_restart"):
        _correct(d, variant)
    if variant == "side_question":
        _side_question(d)
    t_final = _small_talk(d, variant)
    t_mile = d.t_start + rng.uniform(1.0, 1.8)
    d.events.append(
        _event(
            "worker_delivery",
            t_mile,
            name=d.current,
            task=d.current,
            topic="milestone",
            status="running",
            content=d.task.milestone,
        )
    )
    if variant == "cancel":
        _cancel(d)
    else:
        _deliver(d, t_final)
    events = sorted(d.events, key=lambda e: e["time_s"])
    words = [w for u in p.utterances for w in u.words]
    timeline = p.timeline(words, [USER, AGENT])
    return timeline, {"variant": variant, "tool": tool, "events": events, "labels": d.labels}


def make_agent_bundles(
    out_dir: str | Path, *, count: int = 5, seed: int = 0, backend: TTSBackend | None = None
) -> list[Path]:
    """Write `count` delegation conversations under `out_dir` (``agent-0001``, ...); variants and tools cycle
    through VARIANTS and TOOLS, timings come from `seed`.

    Returns:
        The bundle directories, in order.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if backend is None:
        from synth.espeak import EspeakBackend

        backend = EspeakBackend()
    out = Path(out_dir)
    dirs = []
    tools = sorted(TOOLS)
    for i in range(count):
        rng = random.Random(seed * 100_003 + i)
        variant, tool = VARIANTS[i % len(VARIANTS)], tools[(i + seed) % len(tools)]
        timeline, planted = plan_agent(backend, rng, variant=variant, tool=tool)
        annotations = tuple(
            Annotation(label=lab["label"], speaker=AGENT, start_s=lab["start_s"], end_s=lab["end_s"])
            for lab in planted["labels"]
        )
        conv_id = f"agent-{i + 1:04d}"
        write_bundle(
            out / conv_id,
            conv_id=conv_id,
            timeline=timeline,
            planted=planted,
            source="microturn-synth-agent",
            model_speakers=(AGENT,),
            tags={"variant": variant, "tool": tool},
            annotations=annotations,
            extra={"events": [{**e, "speaker": AGENT} for e in planted["events"]]},
        )
        dirs.append(out / conv_id)
    return dirs
