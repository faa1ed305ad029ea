"""A connected-speech truth set: two espeak-ng voices speaking whole sentences, with every word's true start and end.

    python -c "from synth.connected import make_connected_bundles; print(make_connected_bundles('/tmp/connected'))"

The demo (``synth.demo``) speaks word by word, with pauses between words; real corpora are connected speech. Here
each turn is one espeak-ng utterance, synthesised through the espeak-ng library (``libespeak-ng.so.1``, Debian
package ``libespeak-ng1``, via ctypes) whose synthesis callback reports an ``espeakEVENT_WORD`` at the sample where
each word begins. A word's true span is then taken from the audio between its event and the next one: from the first
to the last 5 ms frame whose RMS is within 40 dB of the utterance's loudest frame (so a pause or a stop closure at
a boundary belongs to no word). Turns are placed on a timeline with 0.25-0.55 s gaps; one turn starts while the
other voice is still speaking (an overlap of about 0.7 s). The default script has 74 words and lasts about 21 s.

Bundles: ``DIR/connected-NNNN/{bundle.json, planted.json, A.wav, B.wav}`` at espeak-ng's 22,050 Hz, words with
their true times (written by synth.bundle_writer, as the other generators' bundles are).
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from schemas.bundle import Word
from synth.bundle_writer import write_bundle
from synth.timeline import Timeline
from synth.tts import Voice

ESPEAK_LIBRARY = "libespeak-ng.so.1"
FRAME_S = 0.005  # frame of the word-span energy measure (seconds)
FLOOR_DB = 40.0  # a frame is speech when its RMS is within this of the utterance's loudest frame (dB)

VOICES = (
    Voice(voice_id="A", engine_voice="en-us+m3", rate_wpm=170, pitch=30),
    Voice(voice_id="B", engine_voice="en+f3", rate_wpm=180, pitch=72),
)

SCRIPT: tuple[tuple[str, str], ...] = (
    ("A", "so what did you think about that talk this morning about our new bridge across the river"),
    ("B", "honestly I found it a bit long but the part about the budget was really interesting"),
    ("A", "yes the budget surprised me too because they said it would cost twice as much as planned"),
    ("B", "right and nobody asked where the extra money is coming from"),  # starts over A's last words
    ("A", "maybe we should write to the council and ask them directly next week"),
)
OVERLAP_TURN = 3  # this turn starts before the previous one ends
OVERLAP_S = 0.7  # ... by about this much (seconds)

# espeak-ng's API (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1
_RATE, _PITCH = 1, 3


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakLibrary:
    """Utterance synthesis with word start events, through libespeak-ng (one instance per process is enough).

    Raises:
        OSError: when libespeak-ng is not installed.
    """

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(ESPEAK_LIBRARY)
        self.sample_rate_hz = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0))
        if self.sample_rate_hz <= 0:
            raise OSError(f"espeak_Initialize failed ({self.sample_rate_hz}): is espeak-ng-data installed?")
        self._chunks: list[np.ndarray] = []
        self._starts: list[tuple[int, int]] = []  # (1-based character position, sample) of each word event
        self._callback = _Callback(self._on_audio)  # kept referenced for the library's lifetime
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, count: int, events) -> int:  # noqa: ANN001 - ctypes pointers
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD:
                self._starts.append((int(events[i].text_position), int(events[i].sample)))
            i += 1
        return 0

    def utterance(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """`text` spoken as one utterance: float32 mono audio and each word's (start, end) sample.

        Raises:
            ValueError: unknown voice, or espeak-ng gave no word event for some word of `text` (it joins clitics
                such as "of the" into one word: the script must avoid them).
        """
        if self._lib.espeak_SetVoiceByName(voice.engine_voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.engine_voice!r}")
        self._lib.espeak_SetParameter(_RATE, voice.rate_wpm, 0)
        self._lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
        self._chunks, self._starts = [], []
        data = text.encode("utf-8")
        self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        positions, pos = [], 0
        for word in text.split():
            pos = text.index(word, pos)
            positions.append(pos + 1)
            pos += len(word)
        found = dict(self._starts)
        missing = [w for w, p in zip(text.split(), positions, strict=True) if p not in found]
        if missing:
            raise ValueError(f"espeak-ng joined {missing} to the word before (no word event) in {text!r}")
        return audio, word_spans(audio, [found[p] for p in positions], rate=self.sample_rate_hz)


def word_spans(audio: np.ndarray, starts: Sequence[int], *, rate: int) -> list[tuple[int, int]]:
    """Each word's (start, end) sample: the first and last loud frame between its start event and the next one
    (see the module docstring); a word with no loud frame keeps its event span."""
    frame = max(1, int(round(FRAME_S * rate)))
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = 20 * np.log10(rms / rms.max()) > -FLOOR_DB
    bounds = [*starts, len(audio)]
    spans = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        frames = np.nonzero(loud[a // frame : -(-b // frame)])[0]
        if frames.size:
            spans.append(
                (max(a, (a // frame + int(frames[0])) * frame), min(b, (a // frame + int(frames[-1]) + 1) * frame))
            )
        else:
            spans.append((a, b))
    return spans


def connected_conversation(engine: EspeakLibrary, rng: random.Random) -> tuple[dict[str, np.ndarray], list[Word]]:
    """The script on a timeline: per-speaker tracks (float32) and the true words."""
    rate = engine.sample_rate_hz
    voices = {v.voice_id: v for v in VOICES}
    placed, words, cursor = [], [], 0
    for i, (speaker, text) in enumerate(SCRIPT):
        audio, spans = engine.utterance(text, voices[speaker])
        loud_start, loud_end = spans[0][0], spans[-1][1]
        if i == 0:
            onset = int(0.3 * rate) - loud_start
        elif i == OVERLAP_TURN:
            onset = cursor - int(OVERLAP_S * rate) - loud_start
        else:
            onset = cursor + int(rng.uniform(0.25, 0.55) * rate) - loud_start
        placed.append((speaker, onset, audio))
        words += [
            Word(text=t, start_s=(onset + a) / rate, end_s=(onset + b) / rate, speaker=speaker, source="tts")
            for t, (a, b) in zip(text.split(), spans, strict=True)
        ]
        cursor = max(cursor, onset + loud_end)
    total = max(onset + len(audio) for _, onset, audio in placed) + int(0.3 * rate)
    tracks = {v.voice_id: np.zeros(total, np.float32) for v in VOICES}
    for speaker, onset, audio in placed:
        tracks[speaker][onset : onset + len(audio)] += audio
    return tracks, sorted(words, key=lambda w: (w.start_s, w.end_s, w.speaker))


def make_connected_bundles(out_dir: str | Path, *, count: int = 1, seed: int = 0) -> list[Path]:
    """Write `count` connected-speech conversations (the script with other gaps each) as bundles under `out_dir`
    (synth.bundle_writer; planted.json names the turn that starts over the other voice); return their directories."""
    engine = EspeakLibrary()
    out = Path(out_dir)
    dirs = []
    for i in range(count):
        tracks, words = connected_conversation(engine, random.Random(seed * 100_003 + i))
        bundle_dir = out / f"connected-{i + 1:04d}"
        timeline = Timeline(
            tracks=tracks,
            words=tuple(words),
            sample_rate_hz=engine.sample_rate_hz,
            num_samples=len(next(iter(tracks.values()))),
        )
        write_bundle(
            bundle_dir,
            conv_id=bundle_dir.name,
            timeline=timeline,
            planted={"events": [], "overlap_turn": OVERLAP_TURN, "overlap_s": OVERLAP_S},
            source="microturn-connected",
            extra={
                "synth": {
                    "engine": "libespeak-ng",
                    "seed": seed,
                    "voices": {v.voice_id: v.engine_voice for v in VOICES},
                }
            },
        )
        dirs.append(bundle_dir)
    return dirs
