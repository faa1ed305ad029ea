"""The rejected list and the stage errors that feed it: every input that did not make it, with the stage, a short
stable kind (for counting) and a readable reason (for a person).

    python -c "from pipeline.rejects import KINDS; print(KINDS)"

A stage raises `DecodeError(kind, message)` or `AlignError(kind, message)` (reading raises `schemas.bundle.BundleError`,
which carries a kind the same way); the job turns it into a `Rejection`. `KINDS` lists every kind, one home; the
manifest counts rejections by stage and kind and the job counts them in Beam counters ``rejected_{stage}_{kind}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from pipeline.inputs.safe_text import safe_text
from schemas.bundle import BUNDLE_KINDS

STAGES = ("read", "decode", "align", "featurise", "label", "write")

DECODE_KINDS = (
    "missing_file",  # a track's or the video's file does not exist
    "empty_file",  # a file of 0 bytes
    "empty_audio",  # a file that decodes to no samples
    "truncated_wav",  # a WAV whose data chunk is shorter than its header says
    "corrupt_audio",  # the decoder stopped on corrupt or truncated data (e.g. a cut FLAC)
    "undecodable_audio",  # not audio that libsndfile or ffmpeg can read
    "no_audio_stream",  # a media file without an audio stream given as a track
    "bad_channel_map",  # a track asks for a channel the file does not have
    "no_media",  # neither audio tracks nor a video
    "empty_conversation",  # no audio samples and no video after the conversation's start
    "undecodable_video",  # the video is not a media file ffprobe can read
    "no_video_stream",  # the video file has no video stream
    "no_video_timestamps",  # the video stream has no packets with timestamps
    "no_video_frames",  # ffmpeg decoded no frame of the video
)
"""Kinds of `DecodeError`, the decode stage's rejections."""

ALIGN_KINDS = (
    "no_transcript",  # neither words nor an RTTM, and no aligner to transcribe
    "needs_aligner",  # text without times and no aligner to time it
    "needs_speaker_turns",  # a single mixed track without an RTTM or a diarization model
    "diarization_failed",  # diarization did not find two speakers in a mixed track
    "aligner_failed",  # the aligner could not transcribe or align a stream
    "track_match_failed",  # unnamed tracks could not be matched to the RTTM's speakers
    "too_few_speakers",  # fewer than two speakers with tracks
    "unknown_speaker",  # words, text, RTTM or annotations of a speaker without a track
    "words_past_end",  # words end after the audio ends (beyond the tolerance)
    "segments_past_end",  # RTTM segments end after the audio ends (beyond the tolerance)
)
"""Kinds of `AlignError`, the align stage's rejections."""

JOB_KINDS = (
    "duplicate_id",  # a second input with a conversation id already given by another
    "id_collision",  # a second input whose id gives the same sample key as another's (schemas.bundle.sanitise_id)
    "unexpected_error",  # any other exception of a stage (its traceback is logged)
)
"""Kinds the job itself gives."""

KINDS = (*BUNDLE_KINDS, *DECODE_KINDS, *ALIGN_KINDS, *JOB_KINDS)
"""Every rejection kind: `schemas.bundle.BUNDLE_KINDS` (reading a bundle), decode, align and the job's own."""


class StageError(ValueError):
    """An input a stage cannot use: `kind` (one of the class's `kinds`) for counting, the message as the reason."""

    kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, kind: str, message: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown {type(self).__name__} kind {kind!r}; expected one of {self.kinds}")
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple:  # pickles with both arguments (the default would pass the message only)
        return type(self), (self.kind, str(self))


class DecodeError(StageError):
    """An audio or video file that cannot be used."""

    kinds = DECODE_KINDS


class AlignError(StageError):
    """A transcript that does not fit its audio."""

    kinds = ALIGN_KINDS


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    input: str  # where the input came from: bundle.json path, manifest:line, moshi json, directory
    stage: str  # one of STAGES
    kind: str  # one of KINDS
    reason: str  # readable, names the file and what is wrong
    conversation_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("input", "reason", "conversation_id"):  # no lone surrogate may reach Beam's coder or Parquet
            value = getattr(self, name)
            if value is not None and safe_text(value) is not value:
                object.__setattr__(self, name, safe_text(value))
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {STAGES}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown rejection kind {self.kind!r}; expected one of {KINDS}")

    def to_row(self) -> dict:
        return asdict(self)
