"""Video on the 200 ms grid: sync against generated flashes and clicks, odd inputs, and the real footage."""

from __future__ import annotations

import io
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipeline.decode import decode_conversation
from pipeline.features import dmel_codes
from pipeline.job import run
from pipeline.rejects import DecodeError
from pipeline.video import VideoConfig, probe_video
from schemas.bundle import Conversation, Track, VideoSpec
from schemas.reader import iter_samples
from schemas.validate import validate

from ..factories import FIXTURES

FPS_NUM, FPS_DEN = 30_000, 1_001  # 29.97 fps
VIDEO_OFFSET_S = 0.35  # video starts this long after the audio in the container
CONTAINER_START_S = 1.25  # both streams start this late in the container
SECONDS = 600.0
SMALL = VideoConfig(width=80, height=40)


def _flash_frames() -> list[int]:
    """Frame indices where a 0.6 s white flash starts, spread over 10 minutes, each at least 40 ms from a 200 ms
    boundary of the conversation clock (so frame, click and dMel frame all fall in one micro-turn)."""
    out = []
    for t in np.linspace(7.3, SECONDS - 20, 14):
        i = math.ceil(t * FPS_NUM / FPS_DEN)
        while True:
            conv_t = i * FPS_DEN / FPS_NUM + VIDEO_OFFSET_S
            if 0.04 < conv_t % 0.2 < 0.16 - FPS_DEN / FPS_NUM:
                break
            i += 1
        out.append(i)
    return out


@pytest.fixture(scope="module")
def sync_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A 10-minute 29.97 fps clip (black, with white flashes) and a click track at the flash times, muxed into a
    .mov with the video 0.35 s after the audio and both 1.25 s into the container."""
    d = tmp_path_factory.mktemp("sync")
    flashes = _flash_frames()
    conv_times = [i * FPS_DEN / FPS_NUM + VIDEO_OFFSET_S for i in flashes]
    enable = "+".join(f"between(n,{i},{i + 17})" for i in flashes)  # 18 frames = 0.6 s
    rate = 16_000
    audio = np.zeros(int((SECONDS + VIDEO_OFFSET_S) * rate), np.float32)
    for t in conv_times:
        s = round(t * rate)
        audio[s : s + 32] = 0.9  # a 2 ms click
    sf.write(d / "clicks.wav", audio, rate, subtype="PCM_16")
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-itsoffset",
            str(VIDEO_OFFSET_S),
            "-f",
            "lavfi",
            "-i",
            f"color=c=black:s=64x48:r={FPS_NUM}/{FPS_DEN}:d={SECONDS}",
            "-i",
            str(d / "clicks.wav"),
            "-filter_complex",
            f"[0:v]drawbox=x=0:y=0:w=64:h=48:color=white:t=fill:enable='{enable}'[v]",
            "-map",
            "[v]",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "300",
            "-fps_mode",
            "passthrough",
            "-c:a",
            "pcm_s16le",
            "-output_ts_offset",
            str(CONTAINER_START_S),
            str(d / "clip.mov"),
        ],
        check=True,
    )
    return d / "clip.mov", flashes


def test_flashes_and_clicks_land_in_the_micro_turn_the_contract_names(sync_clip: tuple[Path, list[int]]) -> None:
    clip, flashes = sync_clip
    probe = probe_video(str(clip))
    assert probe.audio_first_pts_s == pytest.approx(CONTAINER_START_S, abs=1e-3)
    offset = probe.first_pts_s - probe.audio_first_pts_s  # the muxer may round the 0.35 s start to its time base
    assert offset == pytest.approx(VIDEO_OFFSET_S, abs=0.02)
    # flash frame i is shown from offset + i / 29.97 s of the conversation; the click was placed at the nominal time
    conv_times = [offset + i * FPS_DEN / FPS_NUM for i in flashes]
    conv = Conversation(id="sync", origin="test", tracks=(), video=VideoSpec(path=str(clip)), words=())
    decoded = decode_conversation(conv, SMALL)
    assert decoded.video.info["audio_video_offset_s"] == pytest.approx(offset, abs=1e-6)
    frames = decoded.video.jpegs
    white = np.array([j is not None and np.asarray(Image.open(io.BytesIO(j))).mean() > 128 for j in frames])
    # no frame before the video starts: only micro-turns that end after its first frame have one
    first = math.floor(offset / 0.2)
    assert all(f is None for f in frames[:first]) and frames[first] is not None
    onsets = [k for k in range(1, len(white)) if white[k] and not white[k - 1]]
    expected = [math.floor(t / 0.2) for t in conv_times]
    assert onsets == expected  # every flash, 10 minutes in: no drift
    # each click's energy peaks in the dMel of the same micro-turn as its flash
    codes = dmel_codes(decoded.streams["user"]).reshape(-1, 16, 80).astype(np.int32)
    loudest = codes.sum(axis=2)  # (K, 16) summed over channels
    for k in expected:
        window = loudest[k - 1 : k + 2]  # the micro-turn before, the one, the one after
        assert np.unravel_index(window.argmax(), window.shape)[0] == 1, k


def _mk(tmp: Path, name: str, ffmpeg_args: list[str]) -> Path:
    path = tmp / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", *ffmpeg_args, str(path)], check=True)
    return path


def test_odd_inputs_are_masked_or_rejected(tmp_path: Path) -> None:
    # variable frame rate: frames at 0, 0.5, 0.6, 1.3 s ... select() keeps a VFR subset of a 10 fps source
    vfr = _mk(
        tmp_path,
        "vfr.mkv",
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=3",
            "-vf",
            "select='not(between(n,1,4))*not(between(n,7,12))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    )
    probe = probe_video(str(vfr))
    assert probe.variable_frame_rate
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(16_000 * 4, np.float32), 16_000)  # audio longer than the video: masked at the end
    conv = Conversation(
        id="v", origin="t", tracks=(Track(speaker="user", path=str(audio)),), video=VideoSpec(path=str(vfr)), words=()
    )
    d = decode_conversation(conv, SMALL)
    present = [j is not None for j in d.video.jpegs]
    assert len(present) == 20 and all(present[:15]) and not any(present[15:])
    assert d.conversation.model_speakers == ("model",)
    assert d.video.info["video_beyond_audio_s"] == 0.0
    short_audio = tmp_path / "short.wav"
    sf.write(short_audio, np.zeros(16_000, np.float32), 16_000)  # 1 s of audio, 3 s of video: cut and reported
    cut = decode_conversation(
        Conversation(
            id="v",
            origin="t",
            tracks=(Track(speaker="user", path=str(short_audio)),),
            video=VideoSpec(path=str(vfr)),
            words=(),
        ),
        SMALL,
    )
    assert len(cut.video.jpegs) == 5 and cut.video.info["video_beyond_audio_s"] == pytest.approx(2.0, abs=0.11)

    plain = _mk(tmp_path, "plain.mp4", ["-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=1", "-c:v", "libx264"])
    rotated = _mk(tmp_path, "rot.mp4", ["-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90"])
    r = decode_conversation(
        Conversation(id="r", origin="t", tracks=(), video=VideoSpec(path=str(rotated)), words=()), SMALL
    )
    assert r.video.info["rotation_deg"] in (90, -90, 270) and r.video.info["source_size"] == [64, 48]
    assert all(j is not None for j in r.video.jpegs)  # ffmpeg turned the frames upright, then scaled and cropped

    audio_only = _mk(tmp_path, "sound.mp4", ["-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac"])
    with pytest.raises(DecodeError, match="no video stream") as no_video:
        decode_conversation(Conversation(id="a", origin="t", tracks=(), video=VideoSpec(path=str(audio_only))))
    assert no_video.value.kind == "no_video_stream"

    good = _mk(
        tmp_path,
        "good.mp4",
        ["-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10"],
    )
    corrupt = tmp_path / "corrupt.mp4"
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 3, len(data) - 2000, 40):
        data[pos] ^= 0xFF  # damaged frames in the middle
    corrupt.write_bytes(bytes(data))
    c = decode_conversation(
        Conversation(id="c", origin="t", tracks=(), video=VideoSpec(path=str(corrupt)), words=()), SMALL
    )
    # ffmpeg conceals the damaged macroblocks: frames keep their times (nothing shifts), one entry per micro-turn,
    # and the decoder's complaints are counted in the manifest
    assert len(c.video.jpegs) == math.ceil(c.num_samples / 3200) == 20 and all(c.video.jpegs.present())
    assert c.video.info["decoder_messages"] > 0


FOOTAGE = FIXTURES / "videos"


@pytest.mark.skipif(not FOOTAGE.exists(), reason="shared fixtures not present")
def test_real_footage_end_to_end_one_frame_per_micro_turn(tmp_path: Path) -> None:
    inputs = sorted(FOOTAGE.glob("asl_gestures/*.mkv"))[:3] + [FOOTAGE / "one-by-one-person-detection.mp4"]
    for clip in inputs:
        (tmp_path / "in" / clip.stem).mkdir(parents=True)
        (tmp_path / "in" / clip.stem / "bundle.json").write_text(
            json.dumps(
                {
                    "id": clip.stem,
                    "video": str(clip),
                    "words": [],
                    "licence": "CC-BY-4.0",
                    "source": "Intel IoT devkit sample-videos",
                }
            )
        )
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert manifest["counts"]["conversations_written"] == len(inputs)
    frames, microturns = {}, {}
    for s in iter_samples(str(tmp_path / "out"), patches=True):
        meta = s["meta.json"]
        cid = meta["conversation_id"]
        assert s["frames"].shape == (150, 6, 8, 40, 40, 3)
        frames[cid] = frames.get(cid, 0) + int(s["frame_mask"].sum())
        microturns[cid] = microturns.get(cid, 0) + meta["num_microturns"]
    assert frames == microturns  # one stored frame per micro-turn
    assert microturns["one-by-one-person-detection"] == math.ceil(139.4 / 0.2)
    assert {v["conversation_id"] for v in manifest["video"]} == {c.stem for c in inputs}
    assert validate(str(tmp_path / "out")).ok
