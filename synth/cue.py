"""Cue-triggered speech: the model answers a cue while the user goes on talking (``microturn synth cue``).

    microturn synth cue --out /tmp/cue --seed 0 --count 6 --min_monologue_s 15 --max_monologue_s 25

Per example a rule turn, the model's "okay", then a user monologue of [--min_monologue_s, --max_monologue_s]
seconds of everyday sentences with cues at known word times and near-miss distractors that must not trigger:

- ``currency``: "every time I mention a price in euros, tell me the price in dollars at R dollars per euro"; a
  cue "I paid 12 euros for lunch" -> "24 dollars" (``cue_currency``); distractors name dollars or pounds;
- ``colour``: "every time I name a fruit, tell me its colour"; "then I ate a banana" -> "yellow" (``cue_colour``);
  distractors name vegetables and colours without a fruit;
- ``translate``: "every time I say a word in spanish, give me the english word"; "I saw a perro" -> "dog"
  (``cue_translate``); distractors are Spanish loanwords of English (piano, tornado).

The cue word is the word that makes the cue (the "euros" after the amount, the fruit, the Spanish word); the
model starts --latency_s after it ends, in overlap with the user, and the target's window is [cue word end,
due + --after_s]. Cues are at least one ordinary sentence apart and never while the model is still speaking;
every monologue has at least one cue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synth.proactive import MODEL, USER, Example, Script

FILLERS = (
    "so yesterday I went into town with my brother",
    "we walked along the river for a while",
    "the weather was a bit cloudy but not cold",
    "after that we looked at some old books in a shop",
    "my brother wanted to see the new museum",
    "it was quite busy because of the holidays",
    "then we sat down on a bench and talked",
    "he told me about his new job at the bank",
    "I think he likes it more than the last one",
    "later we took the bus back home",
    "the driver was very friendly",
    "in the evening I cooked dinner for everyone",
)
ITEMS = ("lunch", "a ticket", "a book", "the taxi", "a coffee", "the flowers")
FRUITS = {
    "banana": "yellow",
    "strawberry": "red",
    "lime": "green",
    "blueberry": "blue",
    "plum": "purple",
    "cherry": "red",
    "kiwi": "green",
    "lemon": "yellow",
}
VEGETABLES = ("carrot", "potato", "onion", "cucumber")
SPANISH = {
    "perro": "dog",
    "gato": "cat",
    "casa": "house",
    "libro": "book",
    "agua": "water",
    "mesa": "table",
    "luna": "moon",
    "leche": "milk",
}
LOANWORDS = ("piano", "tornado", "patio", "plaza")
RATES = (2, 3, 0.5, 1.5)
RULE_TEXT = {
    "currency": "every time I mention a price in euros tell me the price in dollars at {rate} dollars per euro",
    "colour": "every time I name a fruit tell me its colour",
    "translate": "every time I say a word in spanish give me the english word",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CueConfig:
    """Durations in seconds (see the module docstring)."""

    min_monologue_s: float = 30.0  # shortest user monologue after the rule, seconds
    max_monologue_s: float = 90.0  # longest user monologue, seconds
    latency_s: float = 0.3  # the model starts this long after the cue word ends, seconds
    after_s: float = 1.0  # target window end after the due time, seconds

    def __post_init__(self) -> None:
        if not 5 <= self.min_monologue_s <= self.max_monologue_s:
            raise ValueError(
                f"need 5 <= min_monologue_s <= max_monologue_s, got {self.min_monologue_s}, {self.max_monologue_s}"
            )


def _cue(rule: str, rate: float, s: Script) -> tuple[str, int, str]:
    """(sentence, index of its cue word, the expected answer)."""
    if rule == "currency":
        amount = 2 * s.rng.randint(1, 25)
        return f"I paid {amount} euros for {s.rng.choice(ITEMS)}", 3, f"{amount * rate:g} dollars"
    if rule == "colour":
        fruit = s.rng.choice(sorted(FRUITS))
        return f"then I ate a {fruit}", 4, FRUITS[fruit]
    word = s.rng.choice(sorted(SPANISH))
    return f"and I saw a {word} there", 4, SPANISH[word]


def _distractor(rule: str, s: Script) -> str:
    if rule == "currency":
        return f"it cost {2 * s.rng.randint(1, 25)} {s.rng.choice(('dollars', 'pounds'))} in the end"
    if rule == "colour":
        return s.rng.choice((f"we also bought a {s.rng.choice(VEGETABLES)}", "the door was painted red"))
    return f"there was a {s.rng.choice(LOANWORDS)} in the hall"


TASKS = ("currency", "colour", "translate")


def make_cue(cfg: CueConfig, tasks: tuple[str, ...] = TASKS):  # noqa: ANN201 (returns a synth.proactive.Make)
    """The `Make` of the cue family under `cfg`, drawing its rule from `tasks`."""

    def make(s: Script, bundle_dir: Path, conv_id: str) -> Example:
        rule = s.rng.choice(tasks)
        rate = s.rng.choice(RATES)
        req = s.say(USER, RULE_TEXT[rule].format(rate=f"{rate:g}"), s.samples(s.rng.uniform(0.3, 0.6)))
        ack = s.say(MODEL, "okay", req.end + s.samples(0.4))
        end = ack.end + s.samples(s.rng.uniform(cfg.min_monologue_s, cfg.max_monologue_s))
        t = ack.end + s.samples(0.5)
        fillers = list(FILLERS)
        s.rng.shuffle(fillers)
        since_cue, n_distractors = 1, 0
        while t < end:
            kind = "filler"
            if since_cue >= 1 and s.free[MODEL] < t:
                kind = s.rng.choices(("filler", "cue", "distractor"), weights=(2, 2, 1))[0]
            if not s.targets and 2 * t >= end + ack.end:  # every monologue has a cue by its middle
                kind = "cue"
            if kind == "cue":
                text, at, answer = _cue(rule, rate, s)
            else:
                text = _distractor(rule, s) if kind == "distractor" else fillers[len(s.placements) % len(fillers)]
            u = s.say(USER, text, t)
            since_cue = 0 if kind != "filler" else since_cue + 1
            n_distractors += kind == "distractor"
            if kind == "cue":
                cue_end = u.words[at].end_sample
                s.target(
                    family="cue",
                    category=f"cue_{rule}",
                    text=answer,
                    due=cue_end + s.samples(cfg.latency_s),
                    before_s=cfg.latency_s,
                    after_s=cfg.after_s,
                )
            t = u.end + s.planner.uniform("pause_s")
        return Example(
            timeline=s.timeline(),
            targets=tuple(s.targets),
            task=rule,
            tags={"rule": rule, "distractors": str(n_distractors)}
            | ({"rate": f"{rate:g}"} if rule == "currency" else {}),
        )

    return make
