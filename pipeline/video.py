"""Video on the micro-turn grid: one frame per 200 ms, the last one shown before the micro-turn ends (DESIGN §3).

    python -c "import pipeline.video as v; print(v.probe_video('../shared/fixtures/videos/one-by-one-person-detection.mp4'))"

How frames are chosen: ffmpeg's fps filter with ``round=down`` and ``start_time`` at the conversation's time 0 maps
an input frame with presentation time t to output slot floor(5 t) and emits for slot k the last input frame mapped
to a slot <= k — exactly "the last frame whose presentation time is < 0.2 (k+1)" (output ``-r`` would instead
pick by nearest timestamp). Frames are then scaled to cover and centre-cropped to the configured size (a multiple
of 40), streamed from ffmpeg one at a time and JPEG-encoded at once into a temporary file, so neither
decoded nor encoded video is held in memory.

Timeline: conversation time 0 is the first audio sample. With the video's own audio that is the audio stream's
first packet; with separate audio files it is the video's time 0 plus the bundle's ``offset_s`` (default 0).
Micro-turns before the first frame or after the video's end (last packet's time + duration) get no frame
(masked), so a container start offset or a short video is never silently shifted. ffmpeg applies rotation
metadata (autorotate); the rotation is recorded.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ffmpeg
import numpy as np

from pipeline.rejects import DecodeError
from schemas.config_flags import setting
from schemas.frames import PATCH
from schemas.units import MICROTURN_S

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoConfig:
    width: int = setting(
        320, "pixels: width frames are scaled (to cover) and centre-cropped to; a multiple of 40", flag="video_width"
    )
    height: int = setting(240, "pixels: frame height, a multiple of 40 (320x240 = 8x6 patches)", flag="video_height")
    jpeg_quality: int = setting(90, "JPEG quality 1-95 of stored frames")

    def __post_init__(self) -> None:
        if self.width % PATCH or self.height % PATCH or self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"video size {self.width}x{self.height} must be positive multiples of {PATCH} "
                "(e.g. --video_width 320 --video_height 240)"
            )
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoProbe:
    """What demuxing (not decoding) tells about a file's video. Times in seconds of the file's timeline."""

    first_pts_s: float
    end_s: float  # last packet's presentation time + its duration
    packets: int
    width: int
    height: int
    rotation: int  # degrees, as ffmpeg reports it (0 when none)
    variable_frame_rate: bool
    audio_first_pts_s: float | None  # None: no audio stream


class FrameStore(Sequence):
    """One JPEG (or None) per micro-turn, kept in an anonymous temporary file rather than in memory, so memory
    stays flat however long the video is. Indexing and slicing read the bytes back."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._index: list[tuple[int, int]] = []  # (offset, length); length 0 = no frame
        self._end = 0

    def append(self, jpeg: bytes | None) -> None:
        if jpeg:
            self._file.seek(self._end)
            self._file.write(jpeg)
            self._index.append((self._end, len(jpeg)))
            self._end += len(jpeg)
        else:
            self._index.append((0, 0))

    def present(self) -> list[bool]:
        """Which micro-turns have a frame (without reading any)."""
        return [length > 0 for _, length in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        offset, length = self._index[k]
        if not length:
            return None
        self._file.seek(offset)
        return self._file.read(length)

    def __getstate__(self) -> dict:  # crossing a process boundary (an unfused runner stage): carry the bytes
        return {"jpegs": list(self)}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
        for jpeg in state["jpegs"]:
            self.append(jpeg)


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoFrames:
    """JPEG per micro-turn (None = no frame) and what was measured."""

    jpegs: FrameStore
    info: dict[str, Any] = field(default_factory=dict)


def _first_pts(path: str, selector: str) -> float | None:
    probe = ffmpeg.probe(path, select_streams=selector, show_entries="packet=pts_time", read_intervals="%+#1")
    times = [float(p["pts_time"]) for p in probe.get("packets", []) if p.get("pts_time") not in (None, "N/A")]
    return min(times) if times else None


def probe_video(path: str) -> VideoProbe:
    """Demux `path` and measure its video stream (and the first audio packet's time, if there is audio).

    Raises:
        DecodeError: not a media file, or no video stream.
    """
    try:
        probe = ffmpeg.probe(
            path,
            select_streams="v:0",
            show_entries="packet=pts_time,duration_time:stream=index,codec_type,width,height,"
            "r_frame_rate,avg_frame_rate:stream_side_data=rotation:stream_tags=rotate",
        )
        streams_all = ffmpeg.probe(path)["streams"]
    except ffmpeg.Error as e:
        message = e.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if e.stderr else []
        raise DecodeError(
            "undecodable_video", f"{path}: not a readable media file (ffprobe: {' '.join(message) or 'failed'})"
        ) from None
    if not probe.get("streams"):
        raise DecodeError("no_video_stream", f"{path}: the file has no video stream")
    stream = probe["streams"][0]
    pts = [
        (float(p["pts_time"]), float(p.get("duration_time") or 0.0))
        for p in probe.get("packets", [])
        if p.get("pts_time") not in (None, "N/A")
    ]
    if not pts:
        raise DecodeError("no_video_timestamps", f"{path}: the video stream has no packets with timestamps")
    pts.sort()
    rotation = 0
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            rotation = int(side["rotation"])
    if not rotation and "rotate" in stream.get("tags", {}):
        rotation = int(stream["tags"]["rotate"])
    steps = np.diff([t for t, _ in pts])
    vfr = bool(len(steps) > 1 and (steps.max() - steps.min()) > 0.002)
    has_audio = any(s.get("codec_type") == "audio" for s in streams_all)
    last_t, last_d = pts[-1]
    if last_d <= 0 and len(pts) > 1:
        last_d = float(np.median(steps))
    return VideoProbe(
        first_pts_s=pts[0][0],
        end_s=last_t + last_d,
        packets=len(pts),
        width=int(stream["width"]),
        height=int(stream["height"]),
        rotation=rotation,
        variable_frame_rate=vfr,
        audio_first_pts_s=_first_pts(path, "a:0") if has_audio else None,
    )


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def video_frames(
    path: str, *, origin_s: float, num_microturns: int, config: VideoConfig, probe: VideoProbe | None = None
) -> VideoFrames:
    """Decode the frames of micro-turns 0..num_microturns-1, conversation time 0 being `origin_s` of the file.

    Raises:
        DecodeError: no video stream, or ffmpeg decodes no frame at all.
    """
    probe = probe or probe_video(path)
    w, h = config.width, config.height
    node = (
        ffmpeg.input(path)
        .video.filter("fps", fps=1 / MICROTURN_S, round="down", start_time=origin_s, eof_action="pass")
        .filter("scale", w, h, force_original_aspect_ratio="increase")
        .filter("crop", w, h)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", vframes=num_microturns)
        .global_args("-nostdin", "-v", "error", "-copyts")  # keep the file's timestamps: origin_s is in them
    )
    process = node.run_async(pipe_stdout=True, pipe_stderr=True)
    frame_bytes = w * h * 3
    first_k = math.floor((probe.first_pts_s - origin_s) / MICROTURN_S)  # first micro-turn that has a frame
    end_k = math.ceil((probe.end_s - origin_s) / MICROTURN_S)  # micro-turns >= end_k start after the video ends
    jpegs = FrameStore()
    try:
        while len(jpegs) < num_microturns:
            data = process.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            k = len(jpegs)
            shown = first_k <= k < end_k
            jpegs.append(_jpeg(np.frombuffer(data, np.uint8).reshape(h, w, 3), config.jpeg_quality) if shown else None)
    finally:
        process.stdout.close()
        stderr = process.stderr.read().decode("utf-8", "replace").strip()
        process.stderr.close()
        process.wait()
    if len(jpegs) == 0 and end_k > 0 and first_k < num_microturns:
        raise DecodeError("no_video_frames", f"{path}: ffmpeg decoded no video frame: {stderr[-300:] or 'no message'}")
    while len(jpegs) < num_microturns:
        jpegs.append(None)
    info = {
        "path": path,
        "video_first_pts_s": round(probe.first_pts_s, 6),
        "video_end_s": round(probe.end_s, 6),
        "audio_first_pts_s": None if probe.audio_first_pts_s is None else round(probe.audio_first_pts_s, 6),
        "origin_s": round(origin_s, 6),
        "audio_video_offset_s": round(probe.first_pts_s - origin_s, 6),
        "source_size": [probe.width, probe.height],
        "rotation_deg": probe.rotation,
        "variable_frame_rate": probe.variable_frame_rate,
        "frames": sum(jpegs.present()),
        "masked_microturns": len(jpegs) - sum(jpegs.present()),
        "decoder_messages": len(stderr.splitlines()) if stderr else 0,
    }
    if stderr:
        logger.warning("%s: ffmpeg reported while decoding video: %s", path, stderr[-300:])
    return VideoFrames(jpegs=jpegs, info=info)
