"""The TTS engine interface: one word in, one trimmed mono waveform out.

    python -c "from synth.espeak import EspeakBackend; from synth.tts import Voice; \
print(EspeakBackend().synthesize_word('hello', Voice(voice_id='A', engine_voice='en-us+m3')).shape)"

Synthesis is word by word so that every word's start and end on the conversation timeline are known exactly:
the generator places each word's samples itself (``synth.timeline``). A backend therefore only has to turn one
word into audio whose first and last samples are the word's acoustic start and end. Adding an engine (piper, ...)
means writing one class with the three members of `TTSBackend`; nothing else in ``synth`` names an engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class Voice:
    """How one speaker sounds.

    Attributes:
        voice_id: our name for the voice (e.g. the speaker id it is used for); not passed to the engine.
        engine_voice: the engine's voice name. espeak-ng: language plus optional variant, e.g. ``"en-us+m3"``
            (``espeak-ng --voices`` lists languages, ``--voices=variant`` the variants). Another engine reads
            its own voice or model name here.
        rate_wpm: speaking rate in words per minute (espeak-ng ``-s``; its default is 175).
        pitch: base pitch on espeak-ng's 0-99 scale (``-p``; default 50). Engines without it may ignore it.
        gain_db: level change applied after the backend's loudness normalisation, in dB.
    """

    voice_id: str
    engine_voice: str
    rate_wpm: int = 175
    pitch: int = 50
    gain_db: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"Voice {self.voice_id!r}: pitch must be in 0..99, got {self.pitch}")
        if not 80 <= self.rate_wpm <= 450:
            raise ValueError(
                f"Voice {self.voice_id!r}: rate_wpm must be in 80..450 words per minute, got {self.rate_wpm}"
            )


@runtime_checkable
class TTSBackend(Protocol):
    """A text-to-speech engine as the demo and refusal generators use it.

    Attributes:
        name: engine name, for logs and bundle metadata (e.g. ``"espeak-ng"``).
        sample_rate_hz: rate of every array `synthesize_word` returns.
    """

    name: str
    sample_rate_hz: int

    def synthesize_word(self, text: str, voice: Voice) -> np.ndarray:
        """Speak one word.

        Args:
            text: a single word (or a fixed short token such as ``"mm-hmm"``).
            voice: the voice to speak it in.
        Returns:
            float32 array of shape (num_samples,), mono, at `sample_rate_hz`, values in [-1, 1], with leading and
            trailing silence trimmed: its first and last samples are the word's start and end. Never empty.
        """
        ...


# Word post-processing shared by every backend (see synth/espeak.py for why these values).
TRIM_RELATIVE_THRESHOLD = 0.01
"""Silence trimming: a sample counts as part of the word when |x| >= this fraction of the word's peak (-40 dB)."""

TARGET_RMS = 0.1
"""Loudness normalisation target, RMS of the trimmed word (-20 dBFS)."""

MAX_PEAK = 10 ** (-1 / 20)
"""Peak ceiling after normalisation (-1 dBFS); a word that would exceed it is scaled to it instead."""


def trim_word(audio: np.ndarray, *, text: str, engine: str) -> np.ndarray:
    """Cut leading/trailing samples below TRIM_RELATIVE_THRESHOLD of the peak, so the first and last samples are
    the word's start and end.

    Raises:
        RuntimeError: the engine produced silence.
    """
    magnitude = np.abs(audio)
    peak = float(magnitude.max()) if audio.size else 0.0
    if peak == 0.0:
        raise RuntimeError(f"{engine} produced silence for {text!r}")
    loud = np.flatnonzero(magnitude >= TRIM_RELATIVE_THRESHOLD * peak)
    return audio[loud[0] : loud[-1] + 1]


def normalise_word(audio: np.ndarray, *, gain_db: float) -> np.ndarray:
    """RMS to TARGET_RMS, peak capped at MAX_PEAK, then gain_db (dB); float32, clipped to [-1, 1]."""
    x = audio.astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    peak = float(np.abs(x).max())
    scale = min(TARGET_RMS / rms, MAX_PEAK / peak) * 10 ** (gain_db / 20)
    return np.clip(x * scale, -1.0, 1.0).astype(np.float32)
