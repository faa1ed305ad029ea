"""Whole-clause synthesis with each word's span from the engine itself: libespeak-ng and libflite (ctypes), festival.

    python -c "from synth.engines import VOICE_BANK, Synthesiser; s = Synthesiser(); \
a, w = s.clause('so what did you think of it?', VOICE_BANK[0]); print(len(a) / 16000, w)"

A clause (text up to and including its punctuation) is one engine call, so the engine's own prosody applies:
falling at '.', rising at '?', continuation at ','. Word starts come from the engine: libespeak-ng's synthesis
callback reports an ``espeakEVENT_WORD`` at each word's first sample (see ``synth.connected``); libflite's
utterance carries every segment's end time, and a token's start is the end of the segment before its first phone
(festival, kept open in pipe mode, prints the same feature for each token).
Each word's span is then refined by energy between its start and the next word's (``synth.connected.word_spans``).
Audio is returned at 16 kHz (the pipeline's rate; espeak-ng's 22,050 Hz is resampled with a polyphase filter),
cut to [first word start, last word end], RMS-normalised to -20 dBFS with the peak kept below -1 dBFS.

Voices (`VOICE_BANK`): 12 espeak-ng voices (accents x variants x pitch/rate), 5 flite voices (kal, kal16, awb,
rms, slt; Debian packages ``libflite1``/``flite``) and 2 festival diphone voices (kal, ked; ``festival``,
``festvox-kallpc16k``, ``festvox-kdlpc16k``). Measured on "we could drive to the lake on the" + ',', '.', '?':
espeak-ng ends it rising a little at ',' (78 -> 84 Hz for es-us-m3), falling at '.' (71 -> 66 Hz) and rising more at
'?' (79 -> 91 Hz); flite's voices give the same F0 and durations whatever the punctuation, so in their speech only
the words (a clause cut after a function word) cue a pause; festival rises at '?' (105 -> 110 Hz) and ends ',' and '.'
at one pitch; `Synthesiser.clause(..., boundary_tone=True)` gives both engines' clauses the mark's final movement itself
(``synth.boundary_tone``: a fall with some lengthening at '.', a rise at '?', level at ','). Words espeak-ng joins to
the word before (no word event, e.g. some clitics) share that word's span in proportion to their letters.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from synth.boundary_tone import boundary_tone as final_movement
from synth.connected import EspeakLibrary, word_spans
from synth.tts import MAX_PEAK, TARGET_RMS

_LIBC = ctypes.CDLL(None)
_SRAND_SEED = 12345

OUT_RATE_HZ = 16_000
"""Rate of every clause (and of the bundles' tracks): the pipeline's own, so no resampling happens there."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceSpec:
    """One voice of the bank.

    Attributes:
        name: our stable name (used in splits and metadata).
        engine: ``"espeak-ng"`` or ``"flite"``.
        engine_voice: espeak-ng ``language+variant`` or a flite voice (``kal``, ``kal16``, ``awb``, ``rms``, ``slt``).
        rate_wpm: espeak-ng rate (words per minute); flite ignores it and uses `stretch`.
        pitch: espeak-ng base pitch (0-99); flite: mean F0 in Hz (0 keeps the voice's own).
        stretch: flite duration stretch (1.0: the voice's own rate).
        speed: speed perturbation (any engine): the engine's audio is resampled as if it had been recorded at
            `speed` times its rate, so pitch, formants and tempo all scale by `speed` (1.0: the voice as it is) -
            the speaker-variety augmentation of ASR training (Ko et al., 2015), used to widen a training voice pool.
    """

    name: str
    engine: str
    engine_voice: str
    rate_wpm: int = 175
    pitch: int = 50
    stretch: float = 1.0
    speed: float = 1.0

    def at_rate(self, factor: float) -> VoiceSpec:
        """This voice `factor` times as fast: espeak-ng's words per minute times `factor`, flite's and festival's
        duration stretch divided by it (the name is kept)."""
        if not factor > 0:
            raise ValueError(f"a speaking-rate factor must be > 0, got {factor}")
        if self.engine == "espeak-ng":
            return dataclasses.replace(self, rate_wpm=int(round(self.rate_wpm * factor)))
        return dataclasses.replace(self, stretch=round(self.stretch / factor, 4))

    def at_speed(self, factor: float) -> VoiceSpec:
        """This voice speed-perturbed by `factor` (pitch, formants and tempo times `factor`; the name is kept)."""
        if not 0.5 <= factor <= 2.0:
            raise ValueError(f"a speed-perturbation factor must be within [0.5, 2], got {factor}")
        return dataclasses.replace(self, speed=round(self.speed * factor, 4))

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "engine": self.engine,
            "engine_voice": self.engine_voice,
            "rate_wpm": self.rate_wpm,
            "pitch": self.pitch,
            "stretch": self.stretch,
        }
        return out | ({"speed": self.speed} if self.speed != 1.0 else {})


VOICE_BANK: tuple[VoiceSpec, ...] = (
    VoiceSpec(name="es-us-m3", engine="espeak-ng", engine_voice="en-us+m3", rate_wpm=165, pitch=35),
    VoiceSpec(name="es-gb-f3", engine="espeak-ng", engine_voice="en+f3", rate_wpm=180, pitch=70),
    VoiceSpec(name="es-us-f2", engine="espeak-ng", engine_voice="en-us+f2", rate_wpm=175, pitch=60),
    VoiceSpec(name="es-sc-m1", engine="espeak-ng", engine_voice="en-gb-scotland+m1", rate_wpm=160, pitch=45),
    VoiceSpec(name="es-rp-f4", engine="espeak-ng", engine_voice="en-gb-x-rp+f4", rate_wpm=170, pitch=65),
    VoiceSpec(name="es-029-m2", engine="espeak-ng", engine_voice="en-029+m2", rate_wpm=185, pitch=40),
    VoiceSpec(name="es-la-m7", engine="espeak-ng", engine_voice="en-gb-x-gbclan+m7", rate_wpm=170, pitch=30),
    VoiceSpec(name="es-wm-f5", engine="espeak-ng", engine_voice="en-gb-x-gbcwmd+f5", rate_wpm=175, pitch=75),
    VoiceSpec(name="es-us-klatt", engine="espeak-ng", engine_voice="en-us+klatt", rate_wpm=170, pitch=50),
    VoiceSpec(name="es-us-f4", engine="espeak-ng", engine_voice="en-us+f4", rate_wpm=190, pitch=85),
    VoiceSpec(name="es-rp-m6", engine="espeak-ng", engine_voice="en-gb-x-rp+m6", rate_wpm=155, pitch=40),
    VoiceSpec(name="es-sc-f1", engine="espeak-ng", engine_voice="en-gb-scotland+f1", rate_wpm=170, pitch=60),
    VoiceSpec(name="fl-kal", engine="flite", engine_voice="kal", stretch=1.0),
    VoiceSpec(name="fl-kal16", engine="flite", engine_voice="kal16", stretch=1.05),
    VoiceSpec(name="fl-awb", engine="flite", engine_voice="awb", stretch=1.0),
    VoiceSpec(name="fl-rms", engine="flite", engine_voice="rms", stretch=0.95),
    VoiceSpec(name="fl-slt", engine="flite", engine_voice="slt", stretch=1.0),
    VoiceSpec(name="fe-kal", engine="festival", engine_voice="kal_diphone", stretch=1.0),
    VoiceSpec(name="fe-ked", engine="festival", engine_voice="ked_diphone", stretch=1.1),
)
"""Every voice `synth dialogues` can use; see DEFAULT_HELDOUT_VOICES in synth.dialogues for the split."""

VOICES_BY_NAME = {v.name: v for v in VOICE_BANK}

FLAT_ENDING_ENGINES = ("flite", "festival")
"""Engines whose clause ends at one pitch at ',' and '.' (above): `Synthesiser.clause(..., boundary_tone=True)` gives
them the final pitch movement of the mark (``synth.boundary_tone``); espeak-ng makes its own."""


def token_positions(text: str) -> list[int]:
    """1-based character position of each whitespace-separated token of `text`."""
    positions, pos = [], 0
    for word in text.split():
        pos = text.index(word, pos)
        positions.append(pos + 1)
        pos += len(word)
    return positions


class EspeakEngine(EspeakLibrary):
    """libespeak-ng; clitics without a word event share the previous word's span (see the module docstring)."""

    def clause(self, text: str, voice: VoiceSpec) -> tuple[np.ndarray, list[int]]:
        """Native-rate audio and each token's start sample."""
        if self._lib.espeak_SetVoiceByName(voice.engine_voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.engine_voice!r} (voice {voice.name})")
        self._lib.espeak_SetParameter(1, voice.rate_wpm, 0)  # espeakRATE
        self._lib.espeak_SetParameter(3, voice.pitch, 0)  # espeakPITCH
        self._chunks, self._starts = [], []
        self._lib.espeak_SetSynthCallback(self._callback)  # another EspeakLibrary in this process may have taken it
        data = text.encode("utf-8")
        self._lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)
        self._lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        found = dict(self._starts)
        starts: list[int | None] = [found.get(p) for p in token_positions(text)]
        if starts[0] is None:
            starts[0] = min(found.values(), default=0)
        return audio, _fill_joined(starts, text.split())


def _fill_joined(starts: list[int | None], tokens: list[str]) -> list[int]:
    """Tokens without their own start (joined to the word before) get a share of the run's first start ... next
    start, in proportion to letters; resolved after the spans are measured, so here they get a placeholder."""
    out: list[int] = []
    i = 0
    while i < len(starts):
        j = i + 1
        while j < len(starts) and starts[j] is None:
            j += 1
        a = starts[i]
        assert a is not None
        if j == i + 1:
            out.append(a)
        else:  # a..(next start) shared by tokens i..j-1; next start unknown here: mark with negative lengths
            out.append(a)
            out.extend([-(k - i) for k in range(i + 1, j)])
        i = j
    return out


class _Wave(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int),
        ("samples", ctypes.POINTER(ctypes.c_short)),
    ]


class _VoiceStruct(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p)]


FLITE_VOICES = {
    "kal": ("libflite_cmu_us_kal.so.1", "register_cmu_us_kal"),
    "kal16": ("libflite_cmu_us_kal16.so.1", "register_cmu_us_kal16"),
    "awb": ("libflite_cmu_us_awb.so.1", "register_cmu_us_awb"),
    "rms": ("libflite_cmu_us_rms.so.1", "register_cmu_us_rms"),
    "slt": ("libflite_cmu_us_slt.so.1", "register_cmu_us_slt"),
}
"""flite voice -> (shared library, register function), from Debian package libflite1."""


class FliteEngine:
    """libflite through ctypes; one utterance per clause, token starts from the segment relation.

    Raises:
        OSError: libflite1 is not installed.
    """

    def __init__(self) -> None:
        g = ctypes.RTLD_GLOBAL
        self._lib = ctypes.CDLL("libflite.so.1", mode=g)
        for name in ("libflite_usenglish.so.1", "libflite_cmulex.so.1"):
            ctypes.CDLL(name, mode=g)
        lib = self._lib
        lib.flite_init()
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        lib.flite_synth_text.restype, lib.flite_synth_text.argtypes = vp, [cp, vp]
        lib.utt_wave.restype, lib.utt_wave.argtypes = ctypes.POINTER(_Wave), [vp]
        lib.utt_relation.restype, lib.utt_relation.argtypes = vp, [vp, cp]
        lib.relation_head.restype, lib.relation_head.argtypes = vp, [vp]
        lib.item_next.restype, lib.item_next.argtypes = vp, [vp]
        lib.ffeature_float.restype, lib.ffeature_float.argtypes = ctypes.c_float, [vp, cp]
        lib.ffeature_string.restype, lib.ffeature_string.argtypes = cp, [vp, cp]
        lib.delete_utterance.argtypes = [vp]
        lib.feat_set_float.argtypes = [vp, cp, ctypes.c_float]
        self._voices: dict[tuple[str, float, int], int] = {}

    def _voice(self, spec: VoiceSpec) -> int:
        key = (spec.engine_voice, spec.stretch, spec.pitch)
        if key not in self._voices:
            if spec.engine_voice not in FLITE_VOICES:
                raise ValueError(f"flite has no voice {spec.engine_voice!r}; known: {sorted(FLITE_VOICES)}")
            so, fn = FLITE_VOICES[spec.engine_voice]
            register = getattr(ctypes.CDLL(so, mode=ctypes.RTLD_GLOBAL), fn)
            register.restype = ctypes.c_void_p
            ptr = register(None)
            features = ctypes.cast(ptr, ctypes.POINTER(_VoiceStruct)).contents.features
            self._lib.feat_set_float(features, b"duration_stretch", spec.stretch)
            if spec.pitch > 60:  # Hz; below that the voice keeps its own mean F0
                self._lib.feat_set_float(features, b"int_f0_target_mean", float(spec.pitch))
            self._voices[key] = ptr
        return self._voices[key]

    def clause(self, text: str, voice: VoiceSpec) -> tuple[np.ndarray, list[int], int]:
        """Native-rate audio, each token's start sample, and the rate."""
        lib = self._lib
        utt = lib.flite_synth_text(text.encode("utf-8"), self._voice(voice))
        try:
            wave = lib.utt_wave(utt).contents
            rate = int(wave.sample_rate)
            audio = np.ctypeslib.as_array(wave.samples, shape=(wave.num_samples,)).astype(np.float32) / 32768.0
            starts = []
            tok = lib.relation_head(lib.utt_relation(utt, b"Token"))
            path = b"daughter1.R:SylStructure.daughter1.daughter1.R:Segment.p.end"
            while tok:
                starts.append(int(round(float(lib.ffeature_float(tok, path)) * rate)))
                tok = lib.item_next(tok)
        finally:
            lib.delete_utterance(utt)
        if len(starts) != len(text.split()):
            raise ValueError(f"flite made {len(starts)} tokens of {text!r}; expected {len(text.split())}")
        return audio, starts, rate


FESTIVAL_SCHEME = (
    "(define (microturn_say text file) (let ((u (SynthText text)) (tok nil)) (utt.save.wave u file (quote riff)) "
    "(set! tok (utt.relation.first u (quote Token))) "
    '(while tok (if (item.daughter1 tok) (format t "W %f\\n" (item.feat tok '
    '"daughter1.R:SylStructure.daughter1.daughter1.R:Segment.p.end"))) (set! tok (item.next tok))) '
    '(format t "DONE\\n")))\n'
)
"""Speak a clause to a WAV and print each token's start (top-level Token items with words) then DONE."""


class FestivalEngine:
    """The festival program (Debian ``festival`` with ``festvox-kallpc16k``/``festvox-kdlpc16k``), one process kept
    open in pipe mode; per clause it writes a WAV and prints each word's start (the end of the segment before its
    first phone). Start it in the process that uses it (a forked child must not share a parent's pipe).

    Raises:
        FileNotFoundError: festival or stdbuf is not installed.
    """

    def __init__(self) -> None:
        for tool in ("festival", "stdbuf"):
            if shutil.which(tool) is None:
                raise FileNotFoundError(
                    f"{tool!r} not found: apt-get install festival festvox-kallpc16k festvox-kdlpc16k"
                )
        # stdbuf: festival's stdout is block-buffered on a pipe, which would never hand back a clause's times
        self._proc = subprocess.Popen(
            ["stdbuf", "-oL", "festival", "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        fd, self._wav = tempfile.mkstemp(suffix=".wav", prefix="microturn-festival-")
        os.close(fd)
        self._voice: tuple[str, float] | None = None
        self._send(FESTIVAL_SCHEME)

    def _send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command)
        self._proc.stdin.flush()

    def clause(self, text: str, voice: VoiceSpec) -> tuple[np.ndarray, list[int], int]:
        """Native-rate audio, each token's start sample, and the rate."""
        if self._voice != (voice.engine_voice, voice.stretch):
            if not voice.engine_voice.replace("_", "").isalnum():
                raise ValueError(f"voice {voice.name}: bad festival voice name {voice.engine_voice!r}")
            self._send(f"(voice_{voice.engine_voice})(Parameter.set 'Duration_Stretch {voice.stretch})\n")
            self._voice = (voice.engine_voice, voice.stretch)
        quoted = text.replace("\\", " ").replace('"', " ")
        self._send(f'(microturn_say "{quoted}" "{self._wav}")\n')
        assert self._proc.stdout is not None
        times = []
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError(f"festival exited while speaking {text!r} (voice {voice.engine_voice})")
            if line.startswith("DONE"):
                break
            if line.startswith("W "):
                times.append(float(line.split()[1]))
        audio, rate = sf.read(self._wav, dtype="float32", always_2d=True)
        if len(times) != len(text.split()):
            raise ValueError(f"festival made {len(times)} words of {text!r}; expected {len(text.split())}")
        return audio[:, 0], [int(round(t * rate)) for t in times], int(rate)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait(timeout=10)
        Path(self._wav).unlink(missing_ok=True)


class Synthesiser:
    """Both engines behind one call; a per-(text, voice) cache, since backchannels and fillers repeat."""

    def __init__(self) -> None:
        self._espeak: EspeakEngine | None = None
        self._flite: FliteEngine | None = None
        self._festival: FestivalEngine | None = None
        self._cache: dict[tuple[str, VoiceSpec, bool], tuple[np.ndarray, list[tuple[int, int]]]] = {}

    def load(self, voices: tuple[VoiceSpec, ...] = VOICE_BANK) -> Synthesiser:
        """Load both engines and every flite voice now, without speaking (a process that forks workers calls it
        once, so that each worker starts from the same fresh engine state without paying for loading)."""
        self._espeak = self._espeak or EspeakEngine()
        self._flite = self._flite or FliteEngine()
        for v in voices:
            if v.engine == "flite":
                self._flite._voice(v)
        return self

    def clause(
        self, text: str, voice: VoiceSpec, *, boundary_tone: bool = False
    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """`text` (one clause, with its punctuation) in `voice`: float32 audio at 16 kHz starting at the first
        word's start and ending at the last word's end, and each token's (start, end) sample in it.
        `boundary_tone`: a voice of `FLAT_ENDING_ENGINES` ends with its mark's pitch movement (``synth.boundary_tone``).

        The arrays are shared with the cache: do not change them.
        """
        key = (text, voice, boundary_tone)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        audio, starts, rate = self._synth(text, voice)
        result = _finish(audio, starts, _perturbed_rate(rate, voice.speed), text)
        if boundary_tone and voice.engine in FLAT_ENDING_ENGINES:
            clip, spans = final_movement(*result, text.rstrip()[-1])
            clip.setflags(write=False)
            result = (clip, spans)
        self._cache[key] = result
        return result

    def _synth(self, text: str, voice: VoiceSpec) -> tuple[np.ndarray, list[int], int]:
        _LIBC.srand(_SRAND_SEED)  # both engines draw noise from C's rand(): reseed, so a clause is always the same
        if voice.engine == "espeak-ng":
            if self._espeak is None:
                self._espeak = EspeakEngine()
            audio, starts = self._espeak.clause(text, voice)
            return audio, starts, self._espeak.sample_rate_hz
        if voice.engine == "flite":
            if self._flite is None:
                self._flite = FliteEngine()
            return self._flite.clause(text, voice)
        if voice.engine == "festival":
            if self._festival is None:
                self._festival = FestivalEngine()
            return self._festival.clause(text, voice)
        raise ValueError(f"voice {voice.name}: unknown engine {voice.engine!r}; use espeak-ng, flite or festival")

    def close(self) -> None:
        """Stop the festival process, if one was started."""
        if self._festival is not None:
            self._festival.close()
            self._festival = None


MAX_INNER_GAP_S = 0.2
"""A silence between two words of one clause (festival breaks phrases before "but", ...) longer than this is cut to
`INNER_GAP_S`, so a clause is always one inter-pausal unit (the pipeline joins words across gaps < 0.3 s)."""
INNER_GAP_S = 0.12


def _close_gaps(clip: np.ndarray, spans: list[tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Cut the middle of every inter-word silence longer than MAX_INNER_GAP_S down to INNER_GAP_S (16 kHz)."""
    limit, keep = int(MAX_INNER_GAP_S * OUT_RATE_HZ), int(INNER_GAP_S * OUT_RATE_HZ)
    pieces, out, shift, pos = [], [], 0, 0
    for k, (a, b) in enumerate(spans):
        if k and a - spans[k - 1][1] > limit:
            gap_start = spans[k - 1][1]
            cut_from, cut_to = gap_start + keep // 2, a - (keep - keep // 2)
            pieces.append(clip[pos:cut_from])
            pos = cut_to
            shift += cut_to - cut_from
        out.append((a - shift, b - shift))
    if not pieces:
        return clip, spans
    pieces.append(clip[pos:])
    return np.concatenate(pieces), out


def _perturbed_rate(rate: int, speed: float) -> int:
    """The rate (Hz) an engine's audio at `rate` is read as for speed perturbation `speed`: rate x speed, rounded to
    a multiple of 100 Hz so that the polyphase resampler to 16 kHz keeps short filters (speed within 0.5 %)."""
    return rate if speed == 1.0 else int(round(rate * speed / 100.0)) * 100


def _finish(audio: np.ndarray, starts: list[int], rate: int, text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    known = [s for s in starts if s >= 0]
    if sorted(known) != known:
        raise ValueError(f"word starts out of order in {text!r}: {starts}")
    spans = word_spans(audio, known, rate=rate)
    tokens = text.split()
    full: list[tuple[int, int]] = []
    k = 0
    i = 0
    while i < len(starts):  # share a joined run's span by letters
        j = i + 1
        while j < len(starts) and starts[j] < 0:
            j += 1
        a, b = spans[k]
        k += 1
        letters = [max(1, sum(c.isalpha() for c in t)) for t in tokens[i:j]]
        edges = np.round(a + (b - a) * np.cumsum([0, *letters]) / sum(letters)).astype(int)
        full.extend((int(edges[n]), int(edges[n + 1])) for n in range(j - i))
        i = j
    lo, hi = full[0][0], full[-1][1]
    clip = audio[lo:hi].astype(np.float64)
    if rate != OUT_RATE_HZ:
        g = gcd(OUT_RATE_HZ, rate)
        clip = resample_poly(clip, OUT_RATE_HZ // g, rate // g)
    scale = lambda s: int(round((s - lo) * OUT_RATE_HZ / rate))  # noqa: E731
    n = len(clip)
    out_spans = [(min(scale(a), n - 1), min(max(scale(b), scale(a) + 1), n)) for a, b in full]
    clip, out_spans = _close_gaps(clip, out_spans)
    rms = float(np.sqrt(np.mean(clip * clip))) or 1.0
    peak = float(np.abs(clip).max()) or 1.0
    clip = np.clip(clip * min(TARGET_RMS / rms, MAX_PEAK / peak), -1.0, 1.0).astype(np.float32)
    clip.setflags(write=False)
    return clip, out_spans
