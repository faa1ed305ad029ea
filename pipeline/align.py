"""Put the transcript on the decoded audio: name the tracks, check the words against the audio, speech per speaker.

    python -c "from pipeline.align import AlignConfig; print(AlignConfig())"

This stage uses the word timings the bundle gives (or, for RTTM-only transcripts, the speaker segments).
Bundles without any transcript are rejected here with a reason until an aligner backend is configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.decode import DecodedConversation
from pipeline.grid import Interval, speech_intervals
from pipeline.speakers import match_tracks
from pipeline.video import VideoFrames
from schemas.bundle import Conversation, Track
from schemas.units import samples_to_seconds, seconds_to_samples


class AlignError(ValueError):
    """A transcript that does not fit its audio; the message is the rejected list's reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignConfig:
    word_end_tolerance_s: float = 0.05  # words may end this far past the audio (then they are clipped); more: reject


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignedConversation:
    """Decoded audio with named streams and the speech of each speaker on the sample grid."""

    conversation: Conversation  # tracks carry speaker names; words clipped to the audio
    streams: Mapping[str, np.ndarray]  # 16 kHz float32 per speaker, num_samples long
    num_samples: int
    speech: Mapping[str, list[Interval]]  # merged speech intervals per speaker (samples)
    video: VideoFrames | None = None  # frames on the micro-turn grid, when the bundle has a video


def align(decoded: DecodedConversation, config: AlignConfig = AlignConfig()) -> AlignedConversation:
    """Check and place the transcript; see the module docstring.

    Raises:
        AlignError: no transcript, fewer than two speakers, words of unknown speakers or beyond the audio.
    """
    conv = decoded.conversation
    streams = dict(decoded.streams)
    if conv.words is None and conv.segments is None:
        raise AlignError("no transcript: give 'words' (with times) or an 'rttm' with speaker turns")
    if any(t.speaker is None for t in conv.tracks):
        try:
            names = match_tracks(streams, conv.segments or ())
        except ValueError as e:
            raise AlignError(f"cannot match tracks to RTTM speakers: {e}") from None
        tracks = tuple(Track(speaker=names[f"track{i}"], path=t.path, channel=t.channel)
                       for i, t in enumerate(conv.tracks))
        streams = {names[k]: v for k, v in streams.items()}
        conv = dataclasses.replace(conv, tracks=tracks)
    speakers = conv.speakers
    if len(speakers) < 2:
        raise AlignError(f"a conversation needs at least two speakers with tracks; found {list(speakers)}")
    duration_s = samples_to_seconds(decoded.num_samples)
    if conv.words is not None:
        unknown = sorted({w.speaker for w in conv.words} - set(speakers))
        if unknown:
            raise AlignError(f"the transcript has words of speakers {unknown} without an audio track "
                             f"(tracks: {list(speakers)})")
        late = [w for w in conv.words if w.end_s > duration_s + config.word_end_tolerance_s]
        if late:
            raise AlignError(
                f"{len(late)} word(s) end after the audio ends ({duration_s:.3f} s), first {late[0].text!r} at "
                f"{late[0].end_s:.3f} s: the transcript does not belong to this audio or the audio is cut short"
            )
        words = tuple(dataclasses.replace(w, end_s=min(w.end_s, duration_s), start_s=min(w.start_s, duration_s))
                      for w in conv.words)
        conv = dataclasses.replace(conv, words=words)
    if conv.segments is not None:
        unknown = sorted({s.speaker for s in conv.segments} - set(speakers))
        if unknown:
            raise AlignError(f"the RTTM has speakers {unknown} without an audio track (tracks: {list(speakers)})")
        late = [s for s in conv.segments if seconds_to_samples(s.end_s) > decoded.num_samples
                + seconds_to_samples(config.word_end_tolerance_s)]
        if late:
            raise AlignError(f"{len(late)} RTTM segment(s) end after the audio ends ({duration_s:.3f} s)")
    unknown = sorted({a.speaker for a in conv.annotations} - set(speakers))
    if unknown:
        raise AlignError(f"annotations name speakers {unknown} without an audio track (tracks: {list(speakers)})")
    speech = {s: speech_intervals(s, words=conv.words, segments=None if conv.words is not None else conv.segments)
              for s in speakers}
    return AlignedConversation(conversation=conv, streams=streams, num_samples=decoded.num_samples, speech=speech,
                               video=decoded.video)
