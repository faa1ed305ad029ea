"""Put the transcript on the decoded audio: name the tracks, check the words against the audio, speech per speaker.

    python -c "from pipeline.align import AlignConfig; print(AlignConfig())"

This stage uses the word timings the bundle gives (or, for RTTM-only transcripts, the speaker segments). When a
bundle has no word times and an aligner is configured (``--aligner``, see `pipeline.aligners`), each speaker's
stream is transcribed and aligned, or, when the bundle gives text without times, aligned only. A single-track mixed
recording is first split into one stream per speaker by its RTTM or by diarization (`pipeline.aligners.diarize`).
Without an aligner, bundles without any transcript are rejected here with a reason that names the option.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.aligners import AlignerBackend, AlignerError, interpolate, refine_boundaries, tokenize_lines
from pipeline.aligners.diarize import DiarizationError, Diarizer, split_streams
from pipeline.decode import DecodedConversation
from pipeline.rejects import AlignError
from pipeline.speakers import match_tracks
from pipeline.video import VideoFrames
from schemas.bundle import Conversation, Segment, Track, Word
from schemas.config_flags import setting
from schemas.grid import Interval, speech_intervals
from schemas.units import samples_to_seconds, seconds_to_samples


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignConfig:
    word_end_tolerance_s: float = setting(
        0.05, "seconds: words may end this far past the audio and are clipped; further: the input is rejected"
    )
    refine_boundaries: bool = setting(
        True, "snap the aligner's word edges to the stream's energy; off, they stay as the aligner gave them"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignedConversation:
    """Decoded audio with named streams and the speech of each speaker on the sample grid."""

    conversation: Conversation  # tracks carry speaker names; words clipped to the audio
    streams: Mapping[str, np.ndarray]  # 16 kHz float32 per speaker, num_samples long
    num_samples: int
    speech: Mapping[str, list[Interval]]  # merged speech intervals per speaker (samples)
    video: VideoFrames | None = None  # frames on the micro-turn grid, when the bundle has a video
    alignment: Mapping[str, object] = dataclasses.field(default_factory=dict)  # what made the words (manifest)


def _split_mixed(
    conv: Conversation, streams: dict[str, np.ndarray], diarizer: Diarizer | None
) -> tuple[Conversation, dict[str, np.ndarray], str]:
    """A single-track recording split into one stream per speaker, by the RTTM or by diarization."""
    (mixture,) = streams.values()
    if conv.segments is not None:
        segments, how = conv.segments, "rttm"
    elif diarizer is not None:
        segments, how = diarizer(mixture), diarizer.model
    else:
        raise AlignError(
            "needs_speaker_turns",
            "a single mixed track needs speaker turns: give an 'rttm' or set --diarize_model to a "
            "local pyannote diarization pipeline",
        )
    try:
        split = dict(split_streams(mixture, segments))
    except DiarizationError as e:
        raise AlignError("diarization_failed", str(e)) from None
    (track,) = conv.tracks
    tracks = tuple(Track(speaker=sp, path=track.path, channel=track.channel) for sp in split)
    return dataclasses.replace(conv, tracks=tracks, segments=tuple(segments)), split, how


def _words_from_backend(
    conv: Conversation, streams: Mapping[str, np.ndarray], backend: AlignerBackend, config: AlignConfig
) -> tuple[tuple[Word, ...], dict[str, int], int]:
    """Transcribe (no text) or align (text without times) every speaker's stream.

    Returns:
        (words, {"<source>:<model>": aligned word count}, number of words placed by interpolation)."""
    texts = conv.texts
    if texts is not None:
        unknown = sorted(set(texts) - set(conv.speakers))
        if unknown:
            raise AlignError(
                "unknown_speaker",
                f"'text' names speakers {unknown} without an audio track (tracks: {list(conv.speakers)})",
            )
    words: list[Word] = []
    for speaker in conv.speakers:
        pcm = streams[speaker]
        try:
            if texts is None:
                found, source = backend.transcribe(pcm), "asr"
            else:
                known, breaks = tokenize_lines(texts.get(speaker, ""))
                found, source = backend.align(pcm, known, breaks=breaks), "aligned"
        except AlignerError as e:
            raise AlignError("aligner_failed", f"{backend.name} on speaker {speaker}: {e}") from None
        found = interpolate(found, duration_s=samples_to_seconds(len(pcm)))
        if config.refine_boundaries:
            found = refine_boundaries(pcm, found)
        words.extend(
            Word(
                text=w.text,
                start_s=w.start_s,
                end_s=w.end_s,
                speaker=speaker,
                source=source,
                score=w.score if w.aligned else None,
            )
            for w in found
        )
    unaligned = sum(w.score is None for w in words)
    counts = {f"{'asr' if texts is None else 'aligned'}:{backend.model}": len(words) - unaligned}
    return tuple(sorted(words, key=lambda w: (w.start_s, w.end_s, w.speaker))), counts, unaligned


def _check_transcript(conv: Conversation) -> None:
    """A bundle without word times and no aligner: it must have an RTTM (speaker turns), and no untimed text."""
    if conv.texts is not None:
        raise AlignError(
            "needs_aligner",
            "the bundle gives 'text' without times: set --aligner (pocketsphinx, whisperx or "
            "faster-whisper) to align it",
        )
    if conv.segments is None:
        raise AlignError(
            "no_transcript",
            "no transcript: give 'words' (with times) or an 'rttm' with speaker turns, or set --aligner to transcribe",
        )


def _name_tracks(conv: Conversation, streams: dict[str, np.ndarray]) -> tuple[Conversation, dict[str, np.ndarray]]:
    """Tracks without a speaker named after the RTTM speakers they match (streams keyed `track{i}` renamed)."""
    try:
        names = match_tracks(streams, conv.segments or ())
    except ValueError as e:
        raise AlignError("track_match_failed", f"cannot match tracks to RTTM speakers: {e}") from None
    tracks = tuple(Track(speaker=names[f"track{i}"], path=t.path, channel=t.channel) for i, t in enumerate(conv.tracks))
    return dataclasses.replace(conv, tracks=tracks), {names[k]: v for k, v in streams.items()}


def _checked_words(
    words: Sequence[Word], speakers: Sequence[str], duration_s: float, config: AlignConfig
) -> tuple[Word, ...]:
    """The words, each of a speaker with a track and ending within the tolerance after the audio; times clamped to
    the audio's end."""
    unknown = sorted({w.speaker for w in words} - set(speakers))
    if unknown:
        raise AlignError(
            "unknown_speaker",
            f"the transcript has words of speakers {unknown} without an audio track (tracks: {list(speakers)})",
        )
    late = [w for w in words if w.end_s > duration_s + config.word_end_tolerance_s]
    if late:
        raise AlignError(
            "words_past_end",
            f"{len(late)} word(s) end after the audio ends ({duration_s:.3f} s), first {late[0].text!r} at "
            f"{late[0].end_s:.3f} s: the transcript does not belong to this audio or the audio is cut short",
        )
    return tuple(
        dataclasses.replace(w, end_s=min(w.end_s, duration_s), start_s=min(w.start_s, duration_s)) for w in words
    )


def _check_segments(
    segments: Sequence[Segment], speakers: Sequence[str], num_samples: int, config: AlignConfig
) -> None:
    """Each RTTM segment is of a speaker with a track and ends within the tolerance after the audio."""
    unknown = sorted({s.speaker for s in segments} - set(speakers))
    if unknown:
        raise AlignError(
            "unknown_speaker", f"the RTTM has speakers {unknown} without an audio track (tracks: {list(speakers)})"
        )
    late = [
        s
        for s in segments
        if seconds_to_samples(s.end_s) > num_samples + seconds_to_samples(config.word_end_tolerance_s)
    ]
    if late:
        raise AlignError(
            "segments_past_end",
            f"{len(late)} RTTM segment(s) end after the audio ends ({samples_to_seconds(num_samples):.3f} s)",
        )


def align(
    decoded: DecodedConversation,
    config: AlignConfig = AlignConfig(),
    *,
    backend: AlignerBackend | None = None,
    diarizer: Diarizer | None = None,
) -> AlignedConversation:
    """Check and place the transcript; see the module docstring.

    Args:
        decoded: the decoded conversation.
        config: checks and refinement.
        backend: the aligner for bundles without word times (None: such bundles need an RTTM, or are rejected).
        diarizer: splits single-track mixed recordings that come without an RTTM.
    Raises:
        AlignError: no transcript, fewer than two speakers, words of unknown speakers or beyond the audio, a mixed
            track without speaker turns, or an aligner failure.
    """
    conv = decoded.conversation
    streams = dict(decoded.streams)
    alignment: dict[str, object] = {}
    if len(streams) == 1 and len(conv.tracks) == 1:
        conv, streams, alignment["diarization"] = _split_mixed(conv, streams, diarizer)
    if conv.words is None and backend is None:
        _check_transcript(conv)
    if any(t.speaker is None for t in conv.tracks):
        conv, streams = _name_tracks(conv, streams)
    speakers = conv.speakers
    if len(speakers) < 2:
        raise AlignError(
            "too_few_speakers", f"a conversation needs at least two speakers with tracks; found {list(speakers)}"
        )
    duration_s = samples_to_seconds(decoded.num_samples)
    if conv.words is None and backend is not None:
        words, alignment["words"], alignment["unaligned_words"] = _words_from_backend(conv, streams, backend, config)
        conv = dataclasses.replace(conv, words=words)
    elif conv.words is not None:
        alignment["words"] = {
            f"{source}:given": n for source, n in sorted(Counter(w.source for w in conv.words).items())
        }
    if conv.words is not None:
        conv = dataclasses.replace(conv, words=_checked_words(conv.words, speakers, duration_s, config))
    if conv.segments is not None:
        _check_segments(conv.segments, speakers, decoded.num_samples, config)
    unknown = sorted({a.speaker for a in conv.annotations} - set(speakers))
    if unknown:
        raise AlignError(
            "unknown_speaker", f"annotations name speakers {unknown} without an audio track (tracks: {list(speakers)})"
        )
    speech = {
        s: speech_intervals(s, words=conv.words, segments=None if conv.words is not None else conv.segments)
        for s in speakers
    }
    return AlignedConversation(
        conversation=conv,
        streams=streams,
        num_samples=decoded.num_samples,
        speech=speech,
        video=decoded.video,
        alignment=alignment,
    )
