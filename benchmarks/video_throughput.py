"""Video decode + frame selection throughput beside ffmpeg's floor, and peak memory against video length.

    .venv/bin/python benchmarks/video_throughput.py [--minutes 30] [--source CLIP]

Makes a long video by looping a real clip without re-encoding (-stream_loop, -c copy), then in one run:
- floor: ffmpeg decoding it to raw RGB frames at the output size (scale to cover + centre crop), nothing around it;
- microturn: pipeline.video.video_frames (fps filter at 5 fps, scale, crop, JPEG per micro-turn), same file;
and prints video-seconds per wall-second for both and their ratio (target: microturn time <= 1.5x the floor's).
Peak RSS of microturn's frame extraction is measured in fresh subprocesses for a short and the long video.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "fixtures" / "videos" / "one-by-one-person-detection.mp4"

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pipeline.video import VideoConfig, probe_video, video_frames
path = {path!r}
probe = probe_video(path)
k = int(probe.end_s / 0.2) + 1
t = time.perf_counter()
frames = video_frames(path, origin_s=0.0, num_microturns=k, config=VideoConfig(), probe=probe)
wall = time.perf_counter() - t
print(json.dumps({{"seconds": probe.end_s, "wall": wall, "frames": frames.info["frames"],
                  "jpeg_mb": sum(len(j or b"") for j in frames.jpegs) / 1e6,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def loop_video(source: Path, minutes: float, out: Path) -> Path:
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(source)],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    )
    loops = max(0, math.ceil(minutes * 60 / float(probe["format"]["duration"])) - 1)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            str(loops),
            "-i",
            str(source),
            "-t",
            str(minutes * 60),
            "-c",
            "copy",
            str(out),
        ],
        check=True,
    )
    return out


def floor_seconds(path: Path, width: int = 320, height: int = 240) -> float:
    t = time.perf_counter()
    proc = subprocess.Popen(
        [
            "ffmpeg",
            "-v",
            "error",
            "-nostdin",
            "-i",
            str(path),
            "-vf",
            f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        stdout=subprocess.PIPE,
    )
    while proc.stdout.read(1 << 20):
        pass
    proc.wait()
    return time.perf_counter() - t


def child(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the long video in minutes")
    parser.add_argument(
        "--short-minutes", type=float, default=5.0, help="length of the short video for the memory comparison, minutes"
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="clip to loop (any video file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        long_video = loop_video(args.source, args.minutes, Path(tmp) / "long.mp4")
        short_video = loop_video(args.source, args.short_minutes, Path(tmp) / "short.mp4")
        floor = floor_seconds(long_video)
        ours = child(long_video)
        short = child(short_video)
    secs = ours["seconds"]
    print(f"video: {args.source.name} looped to {secs / 60:.1f} min; output 320x240, 1 frame per 200 ms")
    print(f"floor (ffmpeg -> raw RGB 320x240, all frames): {secs / floor:8.1f} video-s per wall-s ({floor:.1f} s)")
    print(
        f"microturn (fps filter + JPEG per micro-turn):  {secs / ours['wall']:8.1f} video-s per wall-s "
        f"({ours['wall']:.1f} s, {ours['frames']} frames, {ours['jpeg_mb']:.1f} MB of JPEG)"
    )
    print(f"time ratio microturn / floor: {ours['wall'] / floor:.2f}x (target <= 1.5x)")
    print(
        f"peak RSS: {short['peak_rss_mb']:.0f} MB for {short['seconds'] / 60:.0f} min, "
        f"{ours['peak_rss_mb']:.0f} MB for {secs / 60:.0f} min (JPEGs spooled to a temporary file: "
        f"{short['jpeg_mb']:.0f} vs {ours['jpeg_mb']:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
