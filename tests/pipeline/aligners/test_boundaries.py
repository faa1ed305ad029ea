"""Pauses taken out of word edges (`out_of_pauses`): a start in silence moves to the onset after it, an end in
silence back to the offset before it; edges in speech, and silences as short as a stop's closure, stay."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.aligners import StreamWord, out_of_pauses, refine_boundaries
from pipeline.aligners.energy import frame_energy
from schemas.units import SAMPLE_RATE_HZ


def _signal(*parts: tuple[str, float]) -> np.ndarray:
    """Silence and noise bursts of the given lengths in seconds, e.g. ("silence", 0.5), ("noise", 0.4)."""
    rng = np.random.default_rng(0)
    chunks = [
        (0.3 * rng.standard_normal(int(s * SAMPLE_RATE_HZ)) if kind == "noise" else np.zeros(int(s * SAMPLE_RATE_HZ)))
        for kind, s in parts
    ]
    return np.concatenate(chunks).astype(np.float32)


def _word(start_s: float, end_s: float, *, aligned: bool = True) -> StreamWord:
    return StreamWord(text="but", start_s=start_s, end_s=end_s, score=0.5 if aligned else None, aligned=aligned)


def test_a_start_in_silence_moves_to_the_onset_and_a_start_in_speech_stays() -> None:
    pcm = _signal(("silence", 1.0), ("noise", 0.5))  # onset at 1.0 s
    early, inside = _word(0.7, 1.4), _word(1.1, 1.4)
    out = out_of_pauses([early, inside], frame_energy(pcm))
    assert out[0].start_s == pytest.approx(1.0, abs=0.006)
    assert out[0].end_s == pytest.approx(1.4)
    assert out[1] == inside


def test_an_end_in_silence_moves_to_the_offset_and_an_end_in_speech_stays() -> None:
    pcm = _signal(("silence", 0.2), ("noise", 0.5), ("silence", 1.0))  # offset at 0.7 s
    late, inside = _word(0.3, 1.0), _word(0.3, 0.6)
    out = out_of_pauses([late, inside], frame_energy(pcm))
    assert out[0].end_s == pytest.approx(0.7, abs=0.006)
    assert out[0].start_s == pytest.approx(0.3)
    assert out[1] == inside


def test_a_silence_shorter_than_a_pause_and_unaligned_words_are_left_alone() -> None:
    # a 60 ms stop closure between two bursts: the word after it keeps its start at the closure
    pcm = _signal(("noise", 0.5), ("silence", 0.06), ("noise", 0.5))
    closure = _word(0.5, 0.9)
    assert out_of_pauses([closure], frame_energy(pcm)) == [closure]
    pcm = _signal(("silence", 1.0), ("noise", 0.5))
    unplaced = _word(0.7, 1.4, aligned=False)
    assert out_of_pauses([unplaced], frame_energy(pcm)) == [unplaced]


def test_refine_boundaries_takes_a_pause_out_of_a_word_placed_300_ms_early() -> None:
    # two words in one speech run each; the second starts 300 ms early, in the pause between them
    pcm = _signal(("silence", 0.2), ("noise", 0.6), ("silence", 0.4), ("noise", 0.6), ("silence", 0.2))
    words = [_word(0.2, 0.8), _word(0.9, 1.8)]  # true second onset: 1.2 s
    out = refine_boundaries(pcm, words)
    assert out[1].start_s == pytest.approx(1.2, abs=0.006)
    assert out[0].start_s == pytest.approx(0.2, abs=0.006)
