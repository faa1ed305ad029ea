"""Timed speech: the model speaks because time has passed (``microturn synth timed``).

    microturn synth timed --out /tmp/timed --seed 0 --count 6 --max_wait_s 20

Tasks (drawn per example; bundles, truth and summary as in synth/proactive.py):

- ``oneshot``: "tell me when N seconds have passed" (N in [--min_wait_s, --max_wait_s], said as digits or as
  words); one target "N seconds have passed" due N s after the request ends (category ``timed_oneshot``);
- ``periodic``: "remind me to breathe every K seconds until I say stop" (K in [--min_period_s, --max_period_s]);
  a target every K s after the request (``timed_periodic``, text "breathe"), the user's "stop" at a random time
  between two of them, and no target after it;
- ``elapsed``: "start a timer", later "how long has it been": the answer "T seconds" (T = whole seconds from the
  end of the first request to the end of the question) due --answer_latency_s after the question
  (``timed_elapsed``).

The wait is filled (``filler`` tag) with silence, unrelated chat that ends before the due time, or user speech
that overlaps the due time (the model must still speak). Every target's window is [due - --before_s, due +
--after_s] (defaults 0.2 s and 1.0 s, DESIGN.md §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synth.proactive import MODEL, USER, Example, Script, number_words

CHAT = (
    "by the way the weather looks nice today",
    "I think I will cook pasta tonight",
    "my sister called me this morning",
    "the train was late again yesterday",
    "I need to buy a new pair of shoes",
    "have you ever been to the seaside",
)
REPLIES = ("that sounds good", "oh really", "nice", "I see", "that is interesting")
MONOLOGUE = (
    "so anyway I was telling you about my week",
    "on monday I had a long meeting at work",
    "then on tuesday I went for a run in the park",
    "and in the evening I read a few pages of my book",
    "the neighbours were loud again last night",
    "I still have to call the plumber about the sink",
)
ACTIONS = (("breathe in and out", "breathe"), ("stretch my arms", "stretch"), ("drink some water", "drink"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedConfig:
    """Ranges in seconds (see the module docstring)."""

    min_wait_s: float = 3.0  # shortest one-shot wait / elapsed time, seconds
    max_wait_s: float = 120.0  # longest one-shot wait / elapsed time, seconds
    min_period_s: float = 3.0  # shortest reminder period, seconds
    max_period_s: float = 10.0  # longest reminder period, seconds
    answer_latency_s: float = 0.4  # elapsed-time answer after the question ends, seconds
    before_s: float = 0.2  # target window start before the due time, seconds
    after_s: float = 1.0  # target window end after the due time, seconds

    def __post_init__(self) -> None:
        if not 3 <= self.min_wait_s <= self.max_wait_s:
            raise ValueError(f"need 3 <= min_wait_s <= max_wait_s, got {self.min_wait_s}, {self.max_wait_s}")
        if not 2 <= self.min_period_s <= self.max_period_s:
            raise ValueError(f"need 2 <= min_period_s <= max_period_s, got {self.min_period_s}, {self.max_period_s}")


def _fill(s: Script, filler: str, start: int, due: int) -> None:
    """The wait from `start` to the due sample: silence, chat ending >= 1.5 s before it, or user talk across it."""
    if filler == "chat":
        t, limit = start + s.samples(1.0), due - s.samples(1.5)
        for line in s.rng.sample(CHAT, 3):
            u = s.say(USER, line, t, limit=limit)
            if u is None:
                break
            r = s.say(MODEL, s.rng.choice(REPLIES), u.end + s.samples(0.3), limit=limit)
            if r is None:
                break
            t = r.end + s.samples(s.rng.uniform(0.5, 2.0))
    elif filler == "overlap":
        begin = max(start + s.samples(0.3), due - s.samples(s.rng.uniform(1.0, 3.0)))
        s.sentences(USER, s.rng.sample(MONOLOGUE, 3), begin, limit=due + s.samples(6.0))


def _seconds_text(n: int, as_words: bool) -> str:
    return number_words(n) if as_words else str(n)


TASKS = ("oneshot", "periodic", "elapsed")


def make_timed(cfg: TimedConfig, tasks: tuple[str, ...] = TASKS):  # noqa: ANN201 (returns a synth.proactive.Make)
    """The `Make` of the timed family under `cfg`, drawing its task from `tasks`."""

    def make(s: Script, bundle_dir: Path, conv_id: str) -> Example:
        task = s.rng.choice(tasks)
        filler = s.rng.choice(("silence", "chat", "overlap"))
        as_words = s.rng.random() < 0.5
        lead = s.samples(s.rng.uniform(0.3, 0.6))
        common = {"family": "timed", "before_s": cfg.before_s, "after_s": cfg.after_s}
        if task == "oneshot":
            n = s.rng.randint(int(cfg.min_wait_s), int(cfg.max_wait_s))
            req = s.say(USER, f"tell me when {_seconds_text(n, as_words)} seconds have passed", lead)
            ack = s.say(MODEL, "okay", req.end + s.samples(0.4))
            due = req.end + s.samples(n)
            _fill(s, filler, ack.end, due)
            s.target(category="timed_oneshot", text=f"{n} seconds have passed", due=due, **common)
        elif task == "periodic":
            k = s.rng.randint(int(cfg.min_period_s), int(cfg.max_period_s))
            action, word = s.rng.choice(ACTIONS)
            req = s.say(
                USER, f"remind me to {action} every {_seconds_text(k, as_words)} seconds until I say stop", lead
            )
            s.say(MODEL, "okay", req.end + s.samples(0.4))
            reps = s.rng.randint(2, 5)
            stop = req.end + s.samples((reps + s.rng.uniform(0.35, 0.6)) * k)
            if filler == "overlap":  # the user talks across one of the due times
                j = s.rng.randint(1, reps)
                s.sentences(
                    USER, s.rng.sample(MONOLOGUE, 2), req.end + s.samples(j * k - 1.0), limit=stop - s.samples(0.5)
                )
            for j in range(1, reps + 1):
                s.target(category="timed_periodic", text=word, due=req.end + s.samples(j * k), **common)
            s.say(USER, "stop", stop)
            s.say(MODEL, "okay I stopped", stop + s.samples(0.6))
            filler = "overlap" if filler == "overlap" else "silence"
        else:
            n = s.rng.randint(int(cfg.min_wait_s), int(cfg.max_wait_s))
            mark = s.say(USER, s.rng.choice(("start a timer", "note the time now")), lead)
            ack = s.say(MODEL, "okay the timer is running", mark.end + s.samples(0.4))
            ask = max(mark.end + s.samples(n), ack.end + s.samples(1.0))
            _fill(s, "silence" if filler == "overlap" else filler, ack.end, ask)
            q = s.say(USER, "how long has it been", ask)
            elapsed = round(s.seconds(q.end - mark.end))
            due = q.end + s.samples(cfg.answer_latency_s)
            s.target(category="timed_elapsed", text=f"{elapsed} seconds", due=due, **common)
            filler = "silence" if filler == "overlap" else filler
        return Example(
            timeline=s.timeline(),
            targets=tuple(s.targets),
            task=task,
            tags={"filler": filler, "spoken_number": "words" if as_words else "digits"},
        )

    return make
