"""Word aligners behind one interface: transcribe a stream, or time known words on it.

    python -c "from pipeline.aligners import BACKENDS; print(sorted(BACKENDS))"

Three backends (DESIGN.md §1, data flow "align words"), chosen with ``--aligner``:

- ``whisperx``: faster-whisper transcription (``--whisper_model``), then wav2vec2 CTC forced alignment of the words
  (``--align_model``, a local Hugging Face ``Wav2Vec2ForCTC`` directory). Text without times is aligned only.
- ``faster-whisper``: faster-whisper's own word timestamps (cross-attention DTW). Known text is timed by matching it
  to the transcription (edit distance); words the transcription missed are interpolated.
- ``pocketsphinx``: forced alignment of known text with the en-us acoustic model and dictionary that the
  ``pocketsphinx`` wheel ships (``--pocketsphinx_model`` to use another); without text, faster-whisper transcribes
  first (``--whisper_model``) and pocketsphinx times the words.

A backend works on one 16 kHz stream (one speaker) at a time and returns `StreamWord`s. Words it could not place are
``aligned=False`` and are placed by `interpolate`; `refine_boundaries` then moves aligned word edges onto the
stream's own energy (the trailing-silence and onset trimming that decides which 200 ms cell a word lands in).
Nothing here downloads: every model is a local path, checked by `check_config` before the job starts.
"""

from pipeline.aligners.backend import (
    BACKENDS,
    NO_ALIGNER,
    AlignerBackend,
    AlignerConfig,
    AlignerError,
    StreamWord,
    add_aligner_args,
    aligner_config,
    check_config,
    load_backend,
)
from pipeline.aligners.boundaries import interpolate, out_of_pauses, refine_boundaries, snap_to_speech_runs
from pipeline.aligners.energy import speech_runs
from pipeline.aligners.text import (
    TWO_LETTER_WORDS,
    is_partial_word,
    match_known_words,
    spoken_form,
    tokenize,
    tokenize_lines,
    word_error_counts,
)

__all__ = [
    "BACKENDS",
    "NO_ALIGNER",
    "TWO_LETTER_WORDS",
    "AlignerBackend",
    "AlignerConfig",
    "AlignerError",
    "StreamWord",
    "add_aligner_args",
    "aligner_config",
    "check_config",
    "interpolate",
    "is_partial_word",
    "load_backend",
    "match_known_words",
    "out_of_pauses",
    "refine_boundaries",
    "snap_to_speech_runs",
    "speech_runs",
    "spoken_form",
    "tokenize",
    "tokenize_lines",
    "word_error_counts",
]
