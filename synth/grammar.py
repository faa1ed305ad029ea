"""A procedural grammar of conversational English for `synth dialogues`: topics, statements, questions, answers,
fillers, backchannels and incomplete clauses, with a train/held-out topic split whose content words are disjoint.

    python -c "import random; from synth.grammar import *; r = random.Random(0); \
print([statement(r, TOPICS['cooking']) for _ in range(3)], question(r, TOPICS['chess']))"

Every sentence is a list of clauses; a clause is the text one engine call speaks, its last character its
punctuation ('.', '?' or ','), which sets the engine's prosody. `split_incomplete` cuts a sentence after a function
word, so that a turn can pause in the middle of a clause ("we could take the," ... "boat out on sunday.").
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic's content words (disjoint from every other topic's)."""

    name: str
    things: tuple[str, ...]
    places: tuple[str, ...]
    verbs: tuple[tuple[str, str], ...]  # (base, past)
    adjectives: tuple[str, ...]


def _t(name: str, things: str, places: str, verbs: str, adjectives: str) -> Topic:
    return Topic(
        name=name,
        things=tuple(things.split()),
        places=tuple(places.split()),
        verbs=tuple(tuple(v.split("/")) for v in verbs.split()),  # type: ignore[misc]
        adjectives=tuple(adjectives.split()),
    )


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        _t(
            "cooking",
            "soup bread pasta curry recipe oven sauce pancakes dumplings salad noodles pie",
            "kitchen bakery market restaurant",
            "cook/cooked bake/baked taste/tasted burn/burned season/seasoned stir/stirred",
            "spicy crispy salty delicious greasy tender",
        ),
        _t(
            "travel",
            "flight suitcase passport ticket hotel train map luggage visa ferry tour souvenir",
            "airport station harbour border",
            "book/booked pack/packed miss/missed catch/caught cancel/cancelled visit/visited",
            "cheap delayed crowded scenic foreign overnight",
        ),
        _t(
            "work",
            "meeting deadline report budget project spreadsheet manager contract invoice laptop schedule email",
            "office warehouse lobby headquarters",
            "finish/finished send/sent review/reviewed sign/signed delay/delayed approve/approved",
            "urgent boring quarterly overdue remote tedious",
        ),
        _t(
            "sports",
            "match goal referee team tournament coach stadium jersey ball league penalty trophy",
            "pitch gym court arena",
            "win/won lose/lost score/scored train/trained kick/kicked coach/coached",
            "muddy exhausting brilliant unfair athletic defensive",
        ),
        _t(
            "music",
            "guitar concert album band drummer piano song lyrics chorus violin festival playlist",
            "studio venue club theatre",
            "play/played record/recorded sing/sang tune/tuned rehearse/rehearsed download/downloaded",
            "loud acoustic catchy live electric mellow",
        ),
        _t(
            "gardening",
            "tomatoes roses hedge compost seeds shed lawn tulips soil greenhouse carrots fence",
            "allotment backyard nursery orchard",
            "plant/planted water/watered prune/pruned dig/dug mow/mowed harvest/harvested",
            "sunny overgrown fertile leafy muddier blooming",
        ),
        _t(
            "movies",
            "film actor sequel trailer director popcorn cinema subtitles villain plot script premiere",
            "multiplex lounge drivein screening",
            "watch/watched stream/streamed rent/rented review/rated film/filmed spoil/spoiled",
            "scary hilarious predictable animated dubbed slow",
        ),
        _t(
            "school",
            "homework exam teacher lecture essay textbook semester grade library quiz timetable uniform",
            "classroom campus hall canteen",
            "study/studied pass/passed fail/failed write/wrote teach/taught grade/graded",
            "difficult strict optional final handwritten easy",
        ),
        # held out: never heard in training
        _t(
            "astronomy",
            "telescope comet planet eclipse nebula meteor orbit galaxy asteroid moonrise satellite constellation",
            "observatory rooftop desert planetarium",
            "observe/observed photograph/photographed track/tracked spot/spotted chart/charted measure/measured",
            "distant faint bright lunar cosmic starry",
        ),
        _t(
            "sailing",
            "boat sail anchor mast rope tide yacht compass harbourmaster dinghy rudder lifejacket",
            "marina bay pier lagoon",
            "steer/steered moor/moored row/rowed hoist/hoisted capsize/capsized navigate/navigated",
            "windy calm choppy breezy coastal nautical",
        ),
        _t(
            "chess",
            "bishop knight opening endgame checkmate gambit rook pawn clock notation queen castle",
            "parlour chessroom cafe boardroom",
            "blunder/blundered sacrifice/sacrificed defend/defended resign/resigned analyse/analysed promote/promoted",
            "aggressive positional tactical drawn winning solid",
        ),
        _t(
            "pottery",
            "clay kiln glaze vase bowl wheel mug teapot sculpture apron sponge jug",
            "workshop pottery atelier gallery",
            "throw/threw fire/fired shape/shaped paint/painted trim/trimmed crack/cracked",
            "glossy rustic lopsided fragile earthy handmade",
        ),
    )
}
"""The topics; `HELDOUT_TOPICS` are used only by ``--split heldout``."""

HELDOUT_TOPICS = ("astronomy", "sailing", "chess", "pottery")
TRAIN_TOPICS = tuple(t for t in TOPICS if t not in HELDOUT_TOPICS)

PEOPLE = ("my sister", "my brother", "my neighbour", "my friend", "my boss", "my cousin", "our teacher", "my dad")
TIMES = ("yesterday", "last week", "on monday", "this morning", "last night", "on the weekend", "in june", "today")
PLANS = ("tomorrow", "next week", "on saturday", "tonight", "after lunch", "next month", "this weekend", "soon")
ADVERBS = ("really", "pretty", "quite", "so", "a bit", "actually", "kind of", "very")
FILLERS = ("um,", "uh,", "well,", "you know,", "I mean,", "so,", "like,", "okay so,")
HESITATIONS = ("um,", "uh,")
"""Filled pauses: said before a within-turn pause they tell the listener that more is coming (Clark & Fox Tree 2002,
"Using uh and um in spontaneous speaking")."""
OPENERS = ("yes,", "no,", "yeah,", "well,", "oh,", "hmm,", "right,", "sure,", "not really,", "I think so,")
LINKS = ("and", "but", "because", "so")
BACKCHANNELS = ("mm hmm", "yeah", "right", "uh huh", "okay", "I see", "sure", "oh wow", "true", "yes")
"""At most two words each: the pipeline's backchannel definition (DESIGN.md §4)."""
OVERLAPS = (
    "oh that makes sense",
    "yeah I know what you mean",
    "oh I did not know that",
    "that sounds really good",
    "no way is that true",
    "ha that is so funny",
)
"""Talk-over without a floor change: three words or more, so they are not backchannels."""
INTERRUPT_OPENERS = ("wait,", "sorry,", "hang on,", "no but,", "actually,", "oh,")

FUNCTION_WORDS = frozenset(
    "the a an to of and but because so with about for in on at my your our that is was it we I".split()
)


def _an(word: str) -> str:
    """The indefinite article for `word`."""
    return "an" if word[0] in "aeiou" else "a"


def _pick(rng: random.Random, xs):  # noqa: ANN001, ANN202
    return xs[rng.randrange(len(xs))]


def _statement_words(rng: random.Random, t: Topic) -> str:
    thing, thing2, place = _pick(rng, t.things), _pick(rng, t.things), _pick(rng, t.places)
    base, past = _pick(rng, t.verbs)
    adj, adv = _pick(rng, t.adjectives), _pick(rng, ADVERBS)
    who, when, plan = _pick(rng, PEOPLE), _pick(rng, TIMES), _pick(rng, PLANS)
    forms = (
        f"I {past} the {adj} {thing} {when}",
        f"we could {base} the {thing} at the {place} {plan}",
        f"{who} thinks the {thing} is {adv} {adj}",
        f"the {thing} at the {place} was {adv} {adj}",
        f"I have been trying to {base} {_an(adj)} {adj} {thing} for weeks",
        f"{who} {past} my {thing} {when}",
        f"there is {_an(adj)} {adj} {thing} at the {place} near my house",
        f"I want to {base} the {thing} and the {thing2} {plan}",
        f"the {thing2} was {adj} but the {thing} was {adv} {adj}",
        f"{who} and I {past} the {thing} at the {place}",
        f"it was the most {adj} {thing} I have ever seen",
        f"I forgot to {base} the {thing} {when}",
    )
    return _pick(rng, forms)


def statement(rng: random.Random, t: Topic) -> list[str]:
    """One statement as clauses (one or two; the last ends in '.')."""
    first = _statement_words(rng, t)
    if rng.random() < 0.2:
        return [f"{first},", f"{_pick(rng, LINKS)} {_statement_words(rng, t)}."]
    return [f"{first}."]


def question(rng: random.Random, t: Topic) -> list[str]:
    """One question (a clause ending in '?')."""
    thing, place = _pick(rng, t.things), _pick(rng, t.places)
    base, past = _pick(rng, t.verbs)
    adj, plan = _pick(rng, t.adjectives), _pick(rng, PLANS)
    forms = (
        f"did you {base} the {thing} {_pick(rng, TIMES)}?",
        f"what do you think about the {adj} {thing}?",
        f"where did you {base} that {thing}?",
        f"is the {thing} at the {place} still {adj}?",
        f"do you want to {base} the {thing} {plan}?",
        f"did you ever {base} {_an(thing)} {thing} at the {place}?",
        f"why was the {thing} so {adj}?",
        f"who {past} the {thing} at the {place}?",
        f"should we {base} the {adj} {thing} {plan}?",
    )
    return [_pick(rng, forms)]


def answer_opener(rng: random.Random) -> str:
    return _pick(rng, OPENERS)


def filler(rng: random.Random) -> str:
    return _pick(rng, FILLERS)


def hesitation(rng: random.Random) -> str:
    """A filled pause ("um," or "uh,") as a clause of its own."""
    return _pick(rng, HESITATIONS)


def split_incomplete(rng: random.Random, clauses: list[str]) -> tuple[list[str], list[str]] | None:
    """Cut a sentence after a function word that is not its last word: (clauses up to the cut, the first ending
    in that function word and ','; the rest, completing the sentence). None when it has no such word."""
    words = [(c, i, w) for c, clause in enumerate(clauses) for i, w in enumerate(clause.split())]
    cuts = [
        k
        for k, (c, i, w) in enumerate(words[:-2])
        if w.strip(",.?") in FUNCTION_WORDS and k >= 2 and not w.endswith((",", ".", "?"))
    ]
    if not cuts:
        return None
    k = _pick(rng, cuts)
    c, i, _ = words[k]
    head_words = clauses[c].split()
    before = clauses[:c] + [" ".join(head_words[: i + 1]) + ","]
    after = [" ".join(head_words[i + 1 :])] + clauses[c + 1 :]
    return before, after


def content_words(t: Topic) -> set[str]:
    """Every content word of a topic (verb forms included)."""
    return {*t.things, *t.places, *(v for pair in t.verbs for v in pair), *t.adjectives}
