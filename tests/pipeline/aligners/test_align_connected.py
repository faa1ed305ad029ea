"""Alignment fixes for connected speech (issue 13 item 6): squeezed words at a region's edge, and no snapping of
words to speech runs that end inside a word.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python -m pytest -q tests/pipeline/test_align_connected.py
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.aligners import StreamWord, refine_boundaries
from pipeline.aligners.pocketsphinx_backend import SQUEEZED_S_PER_PHONE, SQUEEZED_SCORE, _free_squeezed, _squeezed

SR = 16_000


def test_a_word_squeezed_at_a_regions_end_is_freed_when_the_next_region_starts_uncovered() -> None:
    regions = [(0, 2 * SR), (4 * SR, 6 * SR)]  # 0-2 s and 4-6 s
    anchors = [0, 0, 1, 1]
    squeezed = [(0.5, 1.8, 0.1), (1.8, 1.9, 1e-4), (4.3, 4.8, 0.1), (4.8, 5.5, 0.1)]  # 4.0-4.3 s: no word
    assert _free_squeezed(anchors, squeezed, regions) == [0, -1, 1, 1]
    confident = [*squeezed[:1], (1.8, 1.9, 0.05), *squeezed[2:]]
    assert _free_squeezed(anchors, confident, regions) == anchors
    covered = [*squeezed[:2], (4.0, 4.8, 0.1), squeezed[3]]
    assert _free_squeezed(anchors, covered, regions) == anchors


def test_connected_words_are_not_snapped_to_runs_that_end_inside_a_word() -> None:
    t = np.arange(3 * SR)
    tone = (0.3 * np.sin(t * 0.3)).astype(np.float32)
    pcm = np.zeros(3 * SR, dtype=np.float32)
    for a, b in [(0.25, 1.25), (1.31, 1.55), (1.61, 1.90), (1.96, 2.30)]:  # runs parted by 60 ms closures
        pcm[int(a * SR) : int(b * SR)] = tone[int(a * SR) : int(b * SR)]
    words = [
        StreamWord(text=f"w{i}", start_s=0.25 + 0.1667 * i, end_s=0.25 + 0.1667 * (i + 1), score=0.5) for i in range(6)
    ]
    words += [
        StreamWord(text="directly", start_s=1.31, end_s=1.70, score=0.5),  # "direc|tly": over two runs
        StreamWord(text="next", start_s=1.70, end_s=2.05, score=0.5),  # "nex|t"
        StreamWord(text="week", start_s=2.05, end_s=2.30, score=0.5),
    ]
    out = refine_boundaries(pcm, words)
    assert out[7].start_s == pytest.approx(1.70, abs=0.006)  # snapping would have pulled it to 1.61 s
    assert out[6].end_s == pytest.approx(1.70, abs=0.006)  # and cut "directly" at 1.55 s


def test_a_word_is_squeezed_only_when_both_short_for_its_phones_and_scored_low() -> None:
    """eval-align --dialogues: words placed beyond one micro-turn spanned 10-47 ms a phone at scores below
    SQUEEZED_SCORE ("tonight", 5 phones, 50 ms); a short word said fast at a good score is not squeezed, nor is an
    unplaced one (it is failed already) or a long one that scored low."""
    low = SQUEEZED_SCORE / 10
    assert _squeezed(0.05, low, 5)
    assert not _squeezed(0.05, 0.1, 5)  # fast but confident
    assert not _squeezed(0.05, None, 5)
    assert not _squeezed(SQUEEZED_S_PER_PHONE * 5 + 0.01, low, 5)  # its phones' length
    assert _squeezed(0.03, low, 0)  # a word without phones counts one
