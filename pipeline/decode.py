"""Decode a conversation's tracks to 16 kHz mono float32 PCM, one array per speaker.

    python -c "from pipeline.decode import decode_file as d; print(d('../shared/fixtures/ami-seriously/mixture.wav')[0].shape)"

WAV and FLAC are decoded in-process at their native rate (soundfile); everything else through ffmpeg-python
(ffprobe for the native rate and channels, ffmpeg to s16le on a pipe). Every input then goes through the same
resampler (torchaudio's sinc resampler, applied in fixed blocks), so the same audio in two containers gives the
same samples. Lengths come from the decoded PCM, never from container headers; a WAV whose data is shorter than
its header says is rejected as truncated.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import wave
from collections.abc import Mapping
from dataclasses import dataclass

import ffmpeg
import numpy as np
import soundfile as sf
from apache_beam.io.filesystems import FileSystems

from pipeline.rejects import DecodeError
from pipeline.resample_bounded import MAX_TABLE_VALUES, resample_any_rate, torchaudio_table_values
from pipeline.runner.streams import map_streams
from pipeline.video import VideoConfig, VideoFrames, VideoProbe, probe_video, video_frames
from schemas.bundle import SILENT_MODEL, Conversation, Track
from schemas.storage import is_local, staged
from schemas.units import SAMPLE_RATE_HZ, num_microturns

logger = logging.getLogger(__name__)

IN_PROCESS_EXTENSIONS = (".wav", ".flac")
RESAMPLE_BLOCK_S = 30
"""Resampling works on blocks of this many seconds of input (bounded memory; fixed, so results are reproducible)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedConversation:
    """A conversation with one 16 kHz float32 stream per speaker, all `num_samples` long (zero-padded)."""

    conversation: Conversation  # with the tracks actually used (video audio and silent streams made explicit)
    streams: Mapping[str, np.ndarray]
    num_samples: int
    track_samples: Mapping[str, int]  # decoded length of each speaker's own track, before padding
    video: VideoFrames | None = None  # frames on the micro-turn grid when the bundle has a video


def _is_local(path: str) -> bool:
    return "://" not in path


def _read_bytes(path: str) -> bytes:
    with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
        return f.read()


def _check_wav_header(source: str | io.BytesIO, decoded_frames: int, path: str) -> None:
    """Reject a PCM WAV whose data chunk is shorter than its header says (libsndfile silently shortens it)."""
    try:
        with wave.open(source) as w:  # type: ignore[arg-type]
            header_frames = w.getnframes()
    except (wave.Error, EOFError):
        return  # not plain PCM (float, extensible): nothing to compare against
    if decoded_frames < header_frames:
        raise DecodeError(
            "truncated_wav",
            f"{path}: truncated WAV: the header announces {header_frames} frames but only {decoded_frames} are there",
        )


def _read_in_process(path: str) -> tuple[np.ndarray, int]:
    # a local path as bytes: a file name that is not UTF-8 (Latin-1 bytes) opens as it is (soundfile would not encode it)
    source: bytes | io.BytesIO = os.fsencode(path) if _is_local(path) else io.BytesIO(_read_bytes(path))
    try:
        info = sf.info(source)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        dtype = "int16" if info.subtype == "PCM_16" else "float32"
        data, rate = sf.read(source, dtype=dtype, always_2d=True)
    except sf.LibsndfileError as e:
        raise DecodeError(
            "undecodable_audio", f"{path}: not decodable, corrupt or truncated audio ({e.error_string})"
        ) from None
    except RuntimeError as e:  # libsndfile decoder errors, e.g. 'flac decoder lost sync' on a truncated FLAC
        raise DecodeError("corrupt_audio", f"{path}: corrupt or truncated audio: {e}") from None
    if path.lower().endswith(".wav"):
        if isinstance(source, io.BytesIO):
            source.seek(0)
        _check_wav_header(path if isinstance(source, bytes) else source, data.shape[0], path)
    return data, int(rate)


def _read_with_ffmpeg(path: str) -> tuple[np.ndarray, int]:
    """ffmpeg cannot open s3:// or gs://: a remote file is staged to a local temporary file (removed after)."""
    with staged(path) as local:
        return _ffmpeg_decode(local, path)


def _ffmpeg_decode(local: str, path: str) -> tuple[np.ndarray, int]:
    """Decode the local file `local` with ffmpeg; messages call it `path`."""
    try:
        probe = ffmpeg.probe(local)
    except ffmpeg.Error as e:
        message = e.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if e.stderr else []
        raise DecodeError(
            "undecodable_audio", f"{path}: not decodable audio (ffprobe: {' '.join(message) or 'failed'})"
        ) from None
    audio = [s for s in probe.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise DecodeError("no_audio_stream", f"{path}: the file has no audio stream")
    stream = audio[0]
    rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    node = ffmpeg.input(local)
    try:
        out, err = (
            node.output("pipe:", format="s16le", acodec="pcm_s16le", ac=channels, ar=rate, map="0:a:0")
            .global_args("-nostdin", "-v", "error")
            .run(capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as e:
        stderr = e.stderr.decode("utf-8", "replace").strip()[-300:] if e.stderr else "no message"
        raise DecodeError("undecodable_audio", f"{path}: ffmpeg could not decode it: {stderr}") from None
    if err.strip():
        raise DecodeError(
            "corrupt_audio", f"{path}: corrupt or truncated audio: {err.decode('utf-8', 'replace').strip()[-300:]}"
        )
    data = np.frombuffer(out, dtype=np.int16).reshape(-1, channels)
    return data, rate


def _sinc_width(orig: int, new: int) -> int:
    """torchaudio's resampling kernel half-width, in input samples (lowpass_filter_width 6, rolloff 0.99)."""
    return math.ceil(6 * orig / (0.99 * min(orig, new)))


def resample_to_16k(pcm: np.ndarray, rate_hz: int) -> np.ndarray:
    """Resample float32 mono PCM from `rate_hz` to 16 kHz in fixed blocks with enough context on both sides that
    each block's output equals what one call on the whole signal computes (up to float rounding).

    The output has exactly ``ceil(len(pcm) * 16000 / rate_hz)`` samples (integer arithmetic), at every rate and
    length; torchaudio's own rule, but torchaudio computes it in float32 and comes out one short for some lengths
    (1,161,481 samples at 22,050 Hz give 842,798, not 842,799); then the missing last sample is computed from the
    block with `orig` more zeros on the right (torchaudio pads with zeros there anyway) and every sample torchaudio
    did return is kept as it was."""
    if rate_hz == SAMPLE_RATE_HZ:
        return np.ascontiguousarray(pcm, dtype=np.float32)
    if torchaudio_table_values(rate_hz, SAMPLE_RATE_HZ) > MAX_TABLE_VALUES:  # e.g. 44,101 Hz: gigabytes of table
        return resample_any_rate(pcm, rate_hz)
    import torch  # imported here: the job's coordinating process never needs it
    import torchaudio

    g = math.gcd(rate_hz, SAMPLE_RATE_HZ)
    orig, new = rate_hz // g, SAMPLE_RATE_HZ // g
    target = -(-new * len(pcm) // orig)  # ceil, in integers
    block = orig * max(1, (RESAMPLE_BLOCK_S * rate_hz) // orig)
    context = orig * (math.ceil(_sinc_width(orig, new) / orig) + 1)
    out = np.empty(target, dtype=np.float32)
    written = 0
    for start in range(0, len(pcm), block):
        lo, hi = max(0, start - context), min(len(pcm), start + block + context)
        piece = np.ascontiguousarray(pcm[lo:hi], dtype=np.float32)
        y = torchaudio.functional.resample(torch.from_numpy(piece), rate_hz, SAMPLE_RATE_HZ).numpy()
        skip = (start - lo) // orig * new
        take = min(block // orig * new, target - written)
        if len(y) < skip + take:  # the last block, one short: its last sample from the block with `orig` zeros more
            longer = torch.from_numpy(np.concatenate([piece, np.zeros(orig, dtype=np.float32)]))
            y = np.concatenate([y, torchaudio.functional.resample(longer, rate_hz, SAMPLE_RATE_HZ).numpy()[len(y) :]])
        out[written : written + take] = y[skip : skip + take]
        written += take
    return out


def decode_file(path: str) -> tuple[np.ndarray, int]:
    """Decode a whole file at its native rate.

    Returns:
        (pcm, rate_hz): pcm is int16 or float32 with shape (frames, channels).
    Raises:
        DecodeError: missing, empty, not audio, truncated or corrupt.
    """
    if not FileSystems.exists(path):
        raise DecodeError("missing_file", f"{path}: file does not exist")
    if FileSystems.match([path])[0].metadata_list[0].size_in_bytes == 0:
        raise DecodeError("empty_file", f"{path}: the file is empty (0 bytes)")
    if path.lower().endswith(IN_PROCESS_EXTENSIONS):
        data, rate = _read_in_process(path)
    else:
        data, rate = _read_with_ffmpeg(path)
    if data.shape[0] == 0:
        raise DecodeError("empty_audio", f"{path}: the file holds no audio samples")
    return data, rate


def _to_float(channel: np.ndarray) -> np.ndarray:
    if channel.dtype == np.int16:
        out = channel.astype(np.float32)
        out *= np.float32(1 / 32768)  # exact, as / 32768 is: a power of two, and int16 / 2**15 is never subnormal
        return out
    return channel.astype(np.float32, copy=False)


def _stretch(pcm: np.ndarray, rate_hz: int, track: Track, path: str) -> np.ndarray:
    """The part of a track's file that is the conversation (`Track.start_s`, `duration_s`; a Lhotse cut)."""
    if track.start_s == 0 and track.duration_s is None:
        return pcm
    start = round(track.start_s * rate_hz)
    if start >= len(pcm):
        raise DecodeError(
            "empty_audio",
            f"{path}: the track starts at {track.start_s} s, after the file's end ({len(pcm) / rate_hz} s)",
        )
    end = len(pcm) if track.duration_s is None else start + round(track.duration_s * rate_hz)
    return pcm[start:end]


def _with_video_tracks(conv: Conversation, probe: VideoProbe) -> Conversation:
    """Make a video bundle's streams explicit: its own audio (or silence) as `audio_speaker` when no tracks are
    given, and a silent model when only one speaker is left."""
    tracks = list(conv.tracks)
    spec = conv.video
    if not tracks:
        path = spec.path if probe.audio_first_pts_s is not None else None
        tracks.append(Track(speaker=spec.audio_speaker, path=path))
    model_speakers = conv.model_speakers
    if len(tracks) == 1:
        tracks.append(Track(speaker=SILENT_MODEL, path=None))
        model_speakers = (SILENT_MODEL,)
    return dataclasses.replace(conv, tracks=tuple(tracks), model_speakers=model_speakers)


def _video_origin(conv: Conversation, probe: VideoProbe) -> float:
    """The video time that is conversation time 0 (see pipeline.video)."""
    if conv.video.offset_s is not None:
        return conv.video.offset_s
    audio_from_video = any(t.path == conv.video.path for t in conv.tracks)
    if audio_from_video and probe.audio_first_pts_s is not None:
        return probe.audio_first_pts_s
    return 0.0


def decode_conversation(
    conv: Conversation, video_config: VideoConfig | None = None, *, threads: int = 1
) -> DecodedConversation:
    """Decode `conv` (see _decode_conversation); a video on an object store is staged to a local temporary file
    for ffmpeg first and removed after."""
    if conv.video is None or is_local(conv.video.path):
        return _decode_conversation(conv, video_config, threads=threads)
    if not FileSystems.exists(conv.video.path):
        raise DecodeError("missing_file", f"{conv.video.path}: file does not exist")
    with staged(conv.video.path) as local:
        return _decode_conversation(conv, video_config, video_file=local, threads=threads)


def _tracks_by_file(conv: Conversation) -> tuple[dict[str, list[tuple[int, str]]], list[str]]:
    """Which tracks each file holds ({path: [(track index, speaker)]}, in track order) and the speakers of the
    tracks without a path or pieces (silent). Tracks without a speaker are named ``track{i}``."""
    silent: list[str] = []
    by_path: dict[str, list[tuple[int, str]]] = {}
    for i, track in enumerate(conv.tracks):
        if track.pieces:  # placed pieces: decoded by _decode_placed
            continue
        if track.path is None:
            silent.append(track.speaker or f"track{i}")
            continue
        by_path.setdefault(track.path, []).append((i, track.speaker or f"track{i}"))
    return by_path, silent


def _track_mono(data: np.ndarray, channel: int | None, *, path: str, speaker: str) -> np.ndarray:
    """One track of a decoded file (frames, channels) as float32 mono at the file's rate: its `channel`, or the
    mean of all channels when None.

    Raises:
        DecodeError: (bad_channel_map) the file has no such channel.
    """
    channels = data.shape[1]
    if channel is None:
        if channels != 1:
            mono = data.astype(np.float32).mean(axis=1)
            if data.dtype == np.int16:
                mono /= 32768.0
            return mono
        return _to_float(data[:, 0])
    if channel >= channels:
        raise DecodeError(
            "bad_channel_map",
            f"{path}: channel map asks for channel {channel} (speaker {speaker}) but the file has "
            f"{channels} channel(s); channels are numbered from 0",
        )
    return _to_float(data[:, channel])


def _decode_tracks(
    conv: Conversation, by_path: Mapping[str, list[tuple[int, str]]], threads: int
) -> dict[str, np.ndarray]:
    """Each file decoded once, each of its tracks cut to the conversation and resampled to 16 kHz float32:
    {speaker: samples}, in file then track order. Up to `threads` tracks are resampled at a time."""
    streams: dict[str, np.ndarray] = {}
    pending: list[tuple[str, np.ndarray, int]] = []  # (speaker, mono at its rate, rate), resampled `threads` at a time

    def resample_pending() -> None:
        done = map_streams(lambda job: resample_to_16k(job[1], job[2]), pending, threads=threads)
        streams.update((speaker, pcm) for (speaker, _, _), pcm in zip(pending, done, strict=True))
        pending.clear()

    for path, tracks in by_path.items():
        data, rate = decode_file(path)
        for i, speaker in tracks:
            mono = _track_mono(data, conv.tracks[i].channel, path=path, speaker=speaker)
            pending.append((speaker, _stretch(mono, rate, conv.tracks[i], path), rate))
            if len(pending) >= threads:
                resample_pending()
        del data
    resample_pending()
    return streams


def _decode_placed(track: Track, speaker: str, threads: int) -> np.ndarray:
    """A track of placed pieces (schemas.bundle.Piece) as 16 kHz float32: each file decoded once, each piece cut
    from it (channels mixed) at the file's rate, resampled and added at its conversation time; at least
    `track.duration_s` seconds long.

    Raises:
        DecodeError: for the first unusable file (missing_file, undecodable_audio, ...).
    """
    jobs: list[tuple[int, np.ndarray, int]] = []  # (conversation sample it starts at, mono at its rate, rate Hz)
    for path in track.paths:
        data, rate = decode_file(path)
        mono = _track_mono(data, None, path=path, speaker=speaker)
        del data
        for piece in (p for p in track.pieces if p.path == path):
            a = round(piece.start_s * rate)
            b = len(mono) if piece.end_s is None else round(piece.end_s * rate)
            jobs.append((round(piece.at_s * SAMPLE_RATE_HZ), mono[a:b], rate))
    done = map_streams(lambda job: resample_to_16k(job[1], job[2]), jobs, threads=threads)
    floor = 0 if track.duration_s is None else math.ceil(track.duration_s * SAMPLE_RATE_HZ)
    out = np.zeros(max([floor] + [at + len(x) for (at, _, _), x in zip(jobs, done, strict=True)]), np.float32)
    for (at, _, _), x in zip(jobs, done, strict=True):
        out[at : at + len(x)] += x
    return out


def _conversation_samples(track_samples: Mapping[str, int], probe: VideoProbe | None, origin_s: float) -> int:
    """The conversation's length in 16 kHz samples: its longest track, or without audio tracks the video from
    `origin_s` (seconds of video time) to its end.

    Raises:
        DecodeError: (no_media) neither tracks nor a video; (empty_conversation) the length is 0.
    """
    if track_samples:
        num_samples = max(track_samples.values())
    elif probe is not None:
        num_samples = max(0, round((probe.end_s - origin_s) * SAMPLE_RATE_HZ))
    else:
        raise DecodeError("no_media", "the bundle has neither audio tracks nor a video")
    if num_samples == 0:
        raise DecodeError(
            "empty_conversation", "the conversation is empty: no audio samples and no video after its start"
        )
    return num_samples


def _decode_video(
    conv: Conversation,
    probe: VideoProbe,
    *,
    video_file: str | None,
    origin_s: float,
    num_samples: int,
    video_config: VideoConfig | None,
) -> VideoFrames:
    """The video's frames on the micro-turn grid of a conversation of `num_samples` 16 kHz samples, video time
    `origin_s` (seconds) being conversation time 0; read from `video_file` (a staged copy) when given."""
    assert conv.video is not None
    video = video_frames(
        video_file or conv.video.path,
        origin_s=origin_s,
        num_microturns=num_microturns(num_samples),
        config=video_config or VideoConfig(),
        probe=probe,
    )
    video.info["path"] = conv.video.path  # the input's own path, not a staged copy's
    video.info["audio_samples"] = num_samples
    # a video that runs on after the audio is cut at the audio's end; say by how much
    video.info["video_beyond_audio_s"] = round(max(0.0, probe.end_s - origin_s - num_samples / SAMPLE_RATE_HZ), 6)
    return video


def _decode_conversation(
    conv: Conversation,
    video_config: VideoConfig | None = None,
    *,
    video_file: str | None = None,
    threads: int = 1,
) -> DecodedConversation:
    """Decode every track of `conv` (each file once, even when several tracks are channels of it) to 16 kHz, and
    its video, if any, onto the micro-turn grid. Up to `threads` tracks are resampled at a time (pipeline.runner.streams;
    the same samples for any value).

    Tracks without a speaker are named ``track{i}`` (the speaker matcher renames them later); tracks without a
    path or pieces are digital silence as long as the conversation; a track of placed pieces is assembled from them.
    Raises:
        DecodeError: for the first unusable file or a channel map that does not match a file.
    """
    probe = None
    if conv.video is not None:
        if not FileSystems.exists(conv.video.path):
            raise DecodeError("missing_file", f"{conv.video.path}: file does not exist")
        probe = probe_video(video_file or conv.video.path)
        conv = _with_video_tracks(conv, probe)
    by_path, silent = _tracks_by_file(conv)
    streams = _decode_tracks(conv, by_path, threads)
    for i, track in enumerate(conv.tracks):
        if track.pieces:
            speaker = track.speaker or f"track{i}"
            streams[speaker] = _decode_placed(track, speaker, threads)
    track_samples = {s: len(x) for s, x in streams.items()}
    origin = 0.0
    if probe is not None:
        origin = _video_origin(conv, probe)
    num_samples = _conversation_samples(track_samples, probe, origin)
    for speaker in silent:
        streams[speaker] = np.zeros(num_samples, dtype=np.float32)
        track_samples[speaker] = 0
    for speaker, pcm in streams.items():
        if len(pcm) < num_samples:
            streams[speaker] = np.concatenate([pcm, np.zeros(num_samples - len(pcm), dtype=np.float32)])
    video = None
    if probe is not None:
        video = _decode_video(
            conv, probe, video_file=video_file, origin_s=origin, num_samples=num_samples, video_config=video_config
        )
    return DecodedConversation(
        conversation=conv, streams=streams, num_samples=num_samples, track_samples=track_samples, video=video
    )
