"""Visual proactivity: count repetitions, call start and stop, call out an appearing object (synth visual).

    microturn synth visual --out /tmp/visual --seed 0 --count 5

Videos are drawn frame by frame (numpy, 320x240 at 10 fps) and encoded by ffmpeg (libx264, one thread, bitexact:
the same frames give the same bytes); the user's request is spoken at the start and the visual events begin
about a second after it ends. Tasks:

- ``count_shape``: "count my reps out loud"; a ball bounces with per-cycle periods drawn from [--min_period_s,
  --max_period_s], with pauses between some cycles, while a distractor square drifts without repeating; a target
  per repetition (``visual_count``, text "3", ``count`` 3, ``cycle_end`` the cycle's end);
- ``count_clip``: the same on a segment of a CC BY clip of --clips (default ../shared/fixtures/videos, *.mp4 and
  *.mkv) looped at a known period (the RepNet trick): each loop is one repetition;
- ``startstop``: "say start when it starts moving and stop when it stops"; a square rests, moves, rests
  (``visual_start`` "start", ``visual_stop`` "stop");
- ``appear``: "tell me when a red square appears"; a red square appears at a known time while a blue circle moves
  (``visual_appear`` "red square");
- ``absent``: the same request, but only a blue square appears: no target, silence is right.

The model speaks --latency_s after the visible event (a cycle's end, the motion's start or stop, the appearance);
the window is [event, due + --after_s].
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.proactive import MODEL, USER, Example, Script

FPS = 10
WIDTH, HEIGHT = 320, 240
TASKS = ("count_shape", "count_clip", "startstop", "appear", "absent")
REQUESTS = {
    "count": "count my reps out loud",
    "startstop": "say start when it starts moving and stop when it stops",
    "appear": "tell me when a red square appears",
}
DEFAULT_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "videos"


@dataclass(frozen=True, slots=True, kw_only=True)
class VisualConfig:
    """Durations in seconds (see the module docstring)."""

    min_period_s: float = 0.6  # shortest repetition period, seconds
    max_period_s: float = 2.0  # longest repetition period, seconds
    min_reps: int = 3  # fewest repetitions per clip, count
    max_reps: int = 6  # most repetitions per clip, count
    latency_s: float = 0.3  # the model speaks this long after the visible event, seconds
    after_s: float = 1.0  # target window end after the due time, seconds
    clips: str = str(DEFAULT_CLIPS)  # directory of CC BY clips to loop for count_clip (*.mp4, *.mkv)

    def __post_init__(self) -> None:
        if not 0.3 <= self.min_period_s <= self.max_period_s:
            raise ValueError(f"need 0.3 <= min_period_s <= max_period_s, got {self.min_period_s}, {self.max_period_s}")
        if not 2 <= self.min_reps <= self.max_reps:
            raise ValueError(f"need 2 <= min_reps <= max_reps, got {self.min_reps}, {self.max_reps}")


def encode_video(frames: np.ndarray, path: Path) -> None:
    """(n, HEIGHT, WIDTH, 3) uint8 RGB frames at FPS -> H.264 MP4, byte-reproducible."""
    n, h, w, _ = frames.shape
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS),
        "-i", "-", "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True, capture_output=True)


def read_clip(path: Path, start_s: float, seconds: float) -> np.ndarray:
    """Frames of `path` from `start_s` for `seconds`, at FPS, scaled to cover WIDTH x HEIGHT and centre-cropped."""
    cmd = [
        "ffmpeg", "-v", "error", "-ss", f"{start_s:.3f}", "-t", f"{seconds:.3f}", "-i", str(path), "-an",
        "-vf", f"fps={FPS},scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=increase,crop={WIDTH}:{HEIGHT}",
        "-threads", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)


def clip_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


class Canvas:
    """Frames on a grey background; shapes drawn per frame."""

    def __init__(self, seconds: float) -> None:
        self.frames = np.full((int(np.ceil(seconds * FPS)), HEIGHT, WIDTH, 3), 96, np.uint8)

    def times(self) -> np.ndarray:
        return np.arange(len(self.frames)) / FPS

    def square(self, i: int, x: float, y: float, size: int, rgb: tuple[int, int, int]) -> None:
        x0, y0 = int(round(x)) - size // 2, int(round(y)) - size // 2
        self.frames[i, max(y0, 0) : max(y0 + size, 0), max(x0, 0) : max(x0 + size, 0)] = rgb

    def disc(self, i: int, x: float, y: float, r: int, rgb: tuple[int, int, int]) -> None:
        yy, xx = np.ogrid[:HEIGHT, :WIDTH]
        self.frames[i][(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = rgb


def _cycles(s: Script, cfg: VisualConfig, start_s: float) -> tuple[list[tuple[float, float]], float]:
    """Repetitions as (start, end) seconds from `start_s`: periods drawn per cycle, some followed by a pause."""
    out, t = [], start_s
    for _ in range(s.rng.randint(cfg.min_reps, cfg.max_reps)):
        period = round(s.rng.uniform(cfg.min_period_s, cfg.max_period_s), 1)
        out.append((t, t + period))
        t += period + (round(s.rng.uniform(0.6, 1.5), 1) if s.rng.random() < 0.3 else 0.0)
    return out, t


_Scene = tuple[Canvas, list[tuple[str, str, float, int | None]], dict[str, str]]
"""A drawn scene: its canvas, its visual events (category, text, event time in seconds, count) and its tags."""


def _clip_scene(
    s: Script, cfg: VisualConfig, clips: list[Path], t0: float
) -> tuple[Canvas, list[tuple[float, float]], dict[str, str]]:
    """count_clip: one segment of a real clip (a period of 0.1 s steps) played `reps` times from `t0` (seconds),
    its first frame held before and its last after; returns the canvas, the cycles' (start, end) in seconds and
    the tags naming the clip."""
    clip = s.rng.choice(clips)
    period = round(s.rng.uniform(cfg.min_period_s, cfg.max_period_s), 1)
    seg_start = round(s.rng.uniform(0, max(0.0, clip_duration(clip) - period - 0.5)), 1)
    segment = read_clip(clip, seg_start, period)[: int(round(period * FPS))]
    reps = s.rng.randint(cfg.min_reps, cfg.max_reps)
    cycles = [(t0 + j * period, t0 + (j + 1) * period) for j in range(reps)]
    end = cycles[-1][1]
    canvas = Canvas(end + 2.0)
    canvas.frames[: int(round(t0 * FPS))] = segment[0]
    for j in range(reps):
        a = int(round(cycles[j][0] * FPS))
        canvas.frames[a : a + len(segment)] = segment[: len(canvas.frames) - a]
    canvas.frames[int(round(end * FPS)) :] = segment[-1]
    return canvas, cycles, {"clip": clip.name, "clip_start_s": f"{seg_start:g}", "period_s": f"{period:g}"}


def _shape_scene(s: Script, cycles: list[tuple[float, float]], end: float) -> Canvas:
    """count_shape: a yellow disc jumping once per cycle ((start, end) seconds) beside a drifting green square,
    until `end` + 2 s."""
    canvas = Canvas(end + 2.0)
    drift = (s.rng.uniform(20, 300), s.rng.uniform(30, 90), s.rng.uniform(-12, 12), s.rng.uniform(-5, 5))
    for i, t in enumerate(canvas.times()):
        y = 200.0
        for a, b in cycles:
            if a <= t < b:
                y = 200.0 - 140.0 * np.sin(np.pi * (t - a) / (b - a))
        canvas.disc(i, 110, y, 18, (230, 200, 40))
        x, yd = (drift[0] + drift[2] * t) % WIDTH, drift[1] + drift[3] * t
        canvas.square(i, x, yd, 24, (40, 170, 90))
    return canvas


def _count_scene(s: Script, cfg: VisualConfig, task: str, clips: list[Path], t0: float) -> _Scene:
    """count_shape or count_clip from `t0` (seconds): one visual_count event at the end of each cycle."""
    cycles, end = _cycles(s, cfg, t0)
    tags: dict[str, str] = {}
    if task == "count_clip":
        canvas, cycles, tags = _clip_scene(s, cfg, clips, t0)
    else:
        canvas = _shape_scene(s, cycles, end)
    return canvas, [("visual_count", str(j + 1), b, j + 1) for j, (_, b) in enumerate(cycles)], tags


def _startstop_scene(s: Script, t0: float) -> _Scene:
    """startstop: a square that starts moving 0.5-3 s after `t0` (seconds) and stops 2-6 s later."""
    start = round(t0 + s.rng.uniform(0.5, 3.0), 1)
    stop = round(start + s.rng.uniform(2.0, 6.0), 1)
    canvas = Canvas(stop + 2.0)
    for i, t in enumerate(canvas.times()):
        moved = min(max(t - start, 0.0), stop - start)
        canvas.square(i, 160 + 110 * np.sin(2.2 * moved), 120 + 60 * np.sin(1.3 * moved), 40, (200, 60, 200))
    return canvas, [("visual_start", "start", start, None), ("visual_stop", "stop", stop, None)], {}


def _appear_scene(s: Script, task: str, t0: float) -> _Scene:
    """appear / absent: a square appears 1-5 s after `t0` (seconds) beside a wandering disc; red for appear (one
    visual_appear event), the disc's blue for absent (no event)."""
    appear = round(t0 + s.rng.uniform(1.0, 5.0), 1)
    canvas = Canvas(appear + 3.0)
    pos = (s.rng.uniform(40, 120), s.rng.uniform(40, 200))
    for i, t in enumerate(canvas.times()):
        canvas.disc(i, 160 + 120 * np.sin(0.7 * t), 120 + 80 * np.cos(0.5 * t), 16, (50, 80, 220))
        if t >= appear:
            canvas.square(i, *pos, 36, (220, 30, 30) if task == "appear" else (50, 80, 220))
    events: list[tuple[str, str, float, int | None]] = []
    if task == "appear":
        events = [("visual_appear", "red square", appear, None)]
    return canvas, events, {"appears_s": f"{appear:g}", "callout": "red square"}


def make_visual(cfg: VisualConfig, tasks: tuple[str, ...] = TASKS):  # noqa: ANN201 (a synth.proactive.Make)
    """The `Make` of the visual family under `cfg`, drawing its task from `tasks`."""
    clips = sorted([*Path(cfg.clips).glob("**/*.mp4"), *Path(cfg.clips).glob("**/*.mkv")])

    def make(s: Script, bundle_dir: Path, conv_id: str) -> Example:
        task = s.rng.choice([t for t in tasks if t != "count_clip" or clips])
        kind = "count" if task.startswith("count") else "startstop" if task == "startstop" else "appear"
        req = s.say(USER, REQUESTS[kind], s.samples(s.rng.uniform(0.3, 0.6)))
        ack = s.say(MODEL, "okay", req.end + s.samples(0.4))
        t0 = round(s.seconds(ack.end) + 1.0, 1)  # visual events start here (on a frame)
        if kind == "count":
            canvas, events, tags = _count_scene(s, cfg, task, clips, t0)
        elif kind == "startstop":
            canvas, events, tags = _startstop_scene(s, t0)
        else:
            canvas, events, tags = _appear_scene(s, task, t0)
        for category, text, at, count in events:
            s.target(
                family="visual",
                category=category,
                text=text,
                due=s.samples(at + cfg.latency_s),
                before_s=cfg.latency_s,
                after_s=cfg.after_s,
                count=count,
                cycle_end_s=at if count is not None else None,
            )
        encode_video(canvas.frames, bundle_dir / "video.mp4")
        return Example(
            timeline=s.timeline(min_samples=s.samples(len(canvas.frames) / FPS)),
            targets=tuple(s.targets),
            task=task,
            tags=tags,
            video="video.mp4",
        )

    return make
