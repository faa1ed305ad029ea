"""`TTSBackend` over the espeak-ng command-line program (Debian package ``espeak-ng``).

    python -c "from synth.espeak import EspeakBackend; from synth.tts import Voice; \
print(EspeakBackend().synthesize_word('hello', Voice(voice_id='A', engine_voice='en-us+m3')).shape)"

Each word is one ``espeak-ng --stdout`` call (about 10-20 ms); the WAV it prints is decoded with soundfile at
espeak-ng's native 22,050 Hz, then:

- **trimmed**: leading and trailing samples whose magnitude is below `TRIM_RELATIVE_THRESHOLD` (1 %, i.e. -40 dB)
  of the word's peak are cut, per sample, so the returned array starts and ends at the first and last sample at or
  above that level. espeak-ng pads every utterance with silence (often ~0.3 s at the end); this removes it.
- **loudness-normalised**: scaled so that the trimmed word's RMS is `TARGET_RMS` (-20 dBFS); if that would put the
  peak above `MAX_PEAK` (-1 dBFS) the word is scaled down to that peak instead, so nothing clips. Then the voice's
  ``gain_db`` is applied and the result clipped to [-1, 1].

Results are cached per (text, voice) for the life of the backend object, so a conversation that repeats a word
calls espeak-ng once.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess

import numpy as np
import soundfile as sf

from synth.tts import Voice, normalise_word, trim_word

logger = logging.getLogger(__name__)

ESPEAK_SAMPLE_RATE_HZ = 22_050
"""espeak-ng's output rate (its formant synthesiser runs at 22,050 Hz)."""


class EspeakBackend:
    """Word-by-word synthesis with the espeak-ng binary.

    Args:
        binary: program name or path of espeak-ng.
    Raises:
        FileNotFoundError: when espeak-ng is not installed.
    """

    name = "espeak-ng"
    sample_rate_hz = ESPEAK_SAMPLE_RATE_HZ

    def __init__(self, binary: str = "espeak-ng") -> None:
        path = shutil.which(binary)
        if path is None:
            raise FileNotFoundError(
                f"{binary!r} was not found on PATH: install Debian package espeak-ng (apt-get install espeak-ng)"
            )
        self.binary = path
        self._cache: dict[tuple[str, Voice], np.ndarray] = {}
        self._known_voices: set[str] | None = None
        self._known_variants: set[str] | None = None

    def synthesize_word(self, text: str, voice: Voice) -> np.ndarray:
        """One word as float32 mono at 22,050 Hz, trimmed and normalised (see the module docstring).

        The returned array is read-only (it is shared with the cache); copy it before changing it.
        """
        key = (text, voice)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        audio = normalise_word(trim_word(self._run(text, voice), text=text, engine=self.name), gain_db=voice.gain_db)
        audio.setflags(write=False)
        self._cache[key] = audio
        return audio

    def _run(self, text: str, voice: Voice) -> np.ndarray:
        if not text.strip():
            raise ValueError(f"cannot synthesise an empty word (voice {voice.voice_id!r})")
        self._check_voice(voice)
        cmd = [
            self.binary,
            "-v",
            voice.engine_voice,
            "-s",
            str(voice.rate_wpm),
            "-p",
            str(voice.pitch),
            "--stdout",
            "--stdin",
        ]
        # Text goes through stdin so that a word starting with "-" is never read as an option.
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise RuntimeError(
                f"espeak-ng failed on {text!r} with voice {voice.engine_voice!r} (exit {proc.returncode}): "
                f"{proc.stderr.decode('utf-8', 'replace').strip() or 'no output'}"
            )
        audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        if rate != ESPEAK_SAMPLE_RATE_HZ:
            raise RuntimeError(f"espeak-ng wrote {rate} Hz audio; expected {ESPEAK_SAMPLE_RATE_HZ} Hz")
        return audio[:, 0]

    def _check_voice(self, voice: Voice) -> None:
        """espeak-ng silently falls back to its default voice on an unknown name: refuse such names instead."""
        if self._known_voices is None:
            self._known_voices = _voice_names(self._list("--voices"))
            self._known_variants = _voice_names(self._list("--voices=variant"))
        assert self._known_variants is not None
        language, _, variant = voice.engine_voice.partition("+")
        if language not in self._known_voices:
            raise ValueError(
                f"voice {voice.voice_id!r}: espeak-ng has no voice {language!r}; `espeak-ng --voices` lists them"
            )
        if variant and variant not in self._known_variants:
            raise ValueError(
                f"voice {voice.voice_id!r}: espeak-ng has no variant {variant!r}; "
                f"`espeak-ng --voices=variant` lists them"
            )

    def _list(self, option: str) -> str:
        proc = subprocess.run([self.binary, option], capture_output=True, check=True)
        return proc.stdout.decode("utf-8", "replace")


def _voice_names(listing: str) -> set[str]:
    """Every name ``-v`` accepts from an ``espeak-ng --voices`` table: language, voice name, file and its stem."""
    names: set[str] = set()
    for row in listing.splitlines()[1:]:
        cols = row.split()
        if len(cols) >= 5:
            names.update((cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]))
    return names
