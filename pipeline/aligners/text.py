"""Words as text: tokens, their spoken forms (AMI markup handled on purpose), partial words, word error rate and
matching known words to heard ones.

    python -c "from pipeline.aligners.text import tokenize; print(tokenize('L_C_D_ Mm-hmm b buttons'))"
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pipeline.aligners.backend import StreamWord

_EDGE_PUNCT = re.compile(r"^[^\w']+|[^\w']+$")
_ACRONYM = re.compile(r"^(?:[A-Za-z]_)+$")  # AMI letter-by-letter acronyms: "L_C_D_"


def tokenize(text: str) -> list[str]:
    """Whitespace tokens of a transcript that hold something to say (tokens of punctuation only are dropped)."""
    return [t for t in text.split() if spoken_form(t)]


def tokenize_lines(text: str) -> tuple[list[str], list[int]]:
    """`tokenize` of a transcript whose lines are utterances (turns, as transcripts and Lhotse supervisions break
    them), and the index of each token that begins an utterance after the first: where the speaker stopped for
    someone else, so the aligner keeps the words on either side apart (`chunks.assign_words`). Blank lines and
    lines with nothing to say add no break."""
    tokens: list[str] = []
    breaks: list[int] = []
    for line in text.splitlines():
        said = tokenize(line)
        if said and tokens:
            breaks.append(len(tokens))
        tokens.extend(said)
    return tokens, breaks


def spoken_form(token: str) -> str:
    """How a transcript token is said, lower case, for alignment and WER: surrounding punctuation removed, AMI
    acronyms spelt as letters joined by '_' ("L_C_D_" -> "l_c_d"), hyphenated words kept ("Mm-hmm" -> "mm-hmm").
    "" for tokens with nothing to say."""
    if _ACRONYM.match(token):
        return "_".join(token.lower().strip("_").split("_"))
    return _EDGE_PUNCT.sub("", token.lower())


_VOWELS = set("aeiou")
TWO_LETTER_WORDS = frozenset(
    "ah am an as at aw ax ay be by do eh go ha he hi hm ho if in is it la ma me mm my no of oh ok on or ow oy pa "
    "so to uh um up us we ya ye yo".split()
)
"""Two-letter words said in their own right: never taken for a cut-off start of the next word ("so some")."""


def is_partial_word(form: str, next_form: str) -> bool:
    """Whether spoken form `form` is a cut-off word. AMI writes partial words as bare fragments: false starts of the
    next word ("b buttons", "di display", "s somewhat") and abandoned ones ("may h maybe"). A fragment is a strict
    prefix of the next word of two letters, not one of `TWO_LETTER_WORDS`, continued by a letter, or any lone
    consonant letter; never the words "a" and "i". It is said as its sounds ("b" -> B), not as the letter's
    name (B IY), so aligners must not look it up as a word (a spoken letter name, "plan B", is the rare loss)."""
    if form in ("a", "i") or not form.isalpha():
        return False
    if len(form) == 1 and form not in _VOWELS:
        return True
    return (
        len(form) == 2
        and form not in TWO_LETTER_WORDS
        and next_form.startswith(form)
        and len(next_form) > 2
        and next_form[len(form)].isalpha()
    )


def word_error_counts(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, list[tuple[int, int]]]:
    """Levenshtein alignment of two token sequences (compared by `spoken_form`).

    Returns:
        (edits, pairs): substitutions + deletions + insertions, and (ref index, hyp index) of tokens that match.
    """
    a, b = [spoken_form(t) for t in ref], [spoken_form(t) for t in hyp]
    n, m = len(a), len(b)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (a[i - 1] != b[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            if a[i - 1] == b[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(cost[n, m]), pairs[::-1]


def match_known_words(words: Sequence[str], heard: Sequence[StreamWord]) -> list[StreamWord]:
    """Time known `words` by the transcription `heard`: matching words take its times and scores, the others are
    unaligned (to be interpolated)."""
    _, pairs = word_error_counts(words, [w.text for w in heard])
    by_ref = dict(pairs)
    out = []
    for i, text in enumerate(words):
        j = by_ref.get(i)
        if j is None:
            out.append(StreamWord(text=text, start_s=0.0, end_s=0.0, aligned=False))
        else:
            h = heard[j]
            out.append(StreamWord(text=text, start_s=h.start_s, end_s=h.end_s, score=h.score))
    return out
