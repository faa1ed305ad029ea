"""One picture of one sample: both streams' dMel, words, speech activity and interaction labels on one time axis.

    microturn inspect demo-out/dataset demo-0001_A_00000 --out sample.png

Top to bottom: video thumbnails (only when the sample has video: the frames.mjpeg and frames.index.npy members,
decoded by schemas.reader), the model's (output) dMel and words,
the interaction labels of schemas.sample.LABEL_BITS as coloured bands with the speech activity of each stream, the
user's (input) words and dMel, the others' dMel and words when more than two people talk, and the proactive
targets (targets.json: each window as a bar, its due time as a red tick, text and category). The x axis is
seconds from the window start; thin lines mark the 200 ms micro-turn grid, darker ones every second; padding
after the conversation's end is greyed. Rendered with matplotlib's Agg canvas (headless, no pyplot state); the PNG
is exactly width_px x height_px.
"""

from __future__ import annotations

import logging
import math
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems

from schemas.checked_reader import DatasetError, check_sample
from schemas.dmel import FRAMES_PER_MICROTURN
from schemas.reader import decode_sample, decode_window, perspectives_of
from schemas.sample import LABEL_BITS
from schemas.shard import require_format
from schemas.tables import INDEX_DIR, read_index, read_manifest
from schemas.units import MICROTURN_S

logger = logging.getLogger(__name__)

STREAM_TITLES = {"input": "input (user)", "others": "others", "output": "output (model)"}
STREAM_COLOURS = {"input": "#3467a8", "others": "#6a9a3a", "output": "#c0392b"}
BAND_COLOURS = {
    "input_speech": "#3467a8",
    "output_speech": "#c0392b",
    "overlap": "#8e44ad",
    "backchannel": "#16a085",
    "interruption": "#e67e22",
    "yield_to_input": "#2980b9",
    "yield_to_output": "#d35400",
    "output_backchannel": "#27ae60",
    "output_interruption": "#f1c40f",
}
"""Band rows, top to bottom: the LABEL_BITS plus `overlap` (both speech bits)."""


class SampleNotFound(KeyError):
    pass


def load_sample(dataset: str, key: str, perspective: str | None = None) -> dict[str, Any]:
    """Read one sample's members by key, using the index's shard and byte offset (no scan of other shards), seen
    from `perspective` (the speaker playing the model; default: the window's first)."""
    require_format(read_manifest(dataset), dataset)
    index = read_index(dataset, columns=["key", "shard", "offset"], filters=[("key", "=", key)]).to_pylist()
    if not index:
        raise SampleNotFound(
            f"{key!r} is not in {dataset}/{INDEX_DIR}/; keys look like "
            "'{conversation}_{window:05d}' (see `microturn validate` or the index)"
        )
    row = index[0]
    raw: dict[str, Any] = {"__key__": key}
    try:
        with FileSystems.open(posixpath.join(dataset, row["shard"])) as f:
            f.seek(row["offset"])
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for member in tar:
                    base, _, ext = member.name.partition(".")
                    if base != key:
                        break
                    raw[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except tarfile.TarError as e:
        raise DatasetError(f"{dataset}: {row['shard']} is truncated or corrupt at {key!r}: {e}") from e
    if "meta.json.zst" not in raw:
        raise SampleNotFound(
            f"{key!r}: no members at {row['shard']} offset {row['offset']}; the index and the "
            "shard disagree (rerun `microturn validate`)"
        )
    try:
        names = perspectives_of(decode_window(raw))
        if perspective is not None and perspective not in names:
            raise SampleNotFound(f"{key!r} has no perspective {perspective!r}; it has {', '.join(names)}")
        sample = decode_sample(raw, perspective=perspective)
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, SampleNotFound):
            raise
        raise DatasetError(f"{dataset}: sample {key!r} does not decode: {e}") from e
    return check_sample(sample, dataset)


def _word_rows(ax: Any, words: Sequence[Mapping[str, Any]], colour: str, x_max: float) -> None:
    """Words at their times: a bar from start to end and the text at the start, on three staggered rows."""
    ax.set_ylim(0, 3)
    ax.set_yticks([])
    shown = [w for w in sorted(words, key=lambda w: w["start_s"]) if w["end_s"] >= 0 and w["start_s"] <= x_max]
    ys = [2.5 - (i % 3) for i in range(len(shown))]
    ax.hlines([y - 0.3 for y in ys], [w["start_s"] for w in shown], [w["end_s"] for w in shown], colors=colour, lw=2)
    for y, w in zip(ys, shown, strict=True):
        ax.text(
            max(w["start_s"], 0.0), y - 0.2, w["text"], fontsize=7, color=colour, va="bottom", ha="left", clip_on=True
        )


def _grid(ax: Any, x_max: float) -> None:
    """The 200 ms grid as two line collections (thin every micro-turn, darker every second): one artist each,
    not one tick per line, which matplotlib draws slowly."""
    k = np.arange(0, int(round(x_max / MICROTURN_S)) + 1)
    second = k % int(round(1 / MICROTURN_S)) == 0
    xt = ax.get_xaxis_transform()
    ax.vlines(k[~second] * MICROTURN_S, 0, 1, transform=xt, colors="#999999", alpha=0.3, lw=0.4, zorder=3)
    ax.vlines(k[second] * MICROTURN_S, 0, 1, transform=xt, colors="#444444", alpha=0.5, lw=0.7, zorder=3)


def _panel_rows(sample: Mapping[str, Any], streams: Sequence[str]) -> list[tuple[str, float]]:
    """The figure's panels top to bottom: (kind, height ratio); kinds are frames, bands, dmel:<stream>,
    words:<stream>, targets and events, each only when the sample has it."""
    rows: list[tuple[str, float]] = []
    if sample.get("frames") is not None:
        rows.append(("frames", 1.6))
    for s in streams:
        if s == "input":
            rows.append(("bands", 2.4))
        rows += [(f"dmel:{s}", 2.0), (f"words:{s}", 0.8)] if s != "input" else [(f"words:{s}", 0.8), (f"dmel:{s}", 2.0)]
    if sample.get("targets.json") is not None:
        rows.append(("targets", 0.8))
    if sample.get("events.json"):
        rows.append(("events", 1.0))
    return rows


def _title(meta: Mapping[str, Any]) -> str:
    """The figure's title: key, conversation, start in seconds, perspective and who plays which role."""
    speakers = meta.get("speakers", {})
    t0 = meta.get("start_microturn", 0) * MICROTURN_S
    return (
        f"{meta['key']}  -  conversation {meta['conversation_id']} from {t0:.1f} s, perspective "
        f"{meta['perspective']}  -  model: {speakers.get('output')}, user: {speakers.get('input')}"
        + (f", others: {', '.join(speakers.get('others', []))}" if speakers.get("others") else "")
    )


def _dmel_panel(ax: Any, codes_KFC: np.ndarray, stream: str) -> None:
    """A stream's dMel codes (K, 16, 80) as an image over seconds (x) and channels (y)."""
    codes = codes_KFC.reshape(-1, codes_KFC.shape[-1])
    ax.imshow(
        codes.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=0,
        vmax=15,
        interpolation="nearest",
        extent=(0, len(codes) / FRAMES_PER_MICROTURN * MICROTURN_S, 0, codes.shape[1]),
    )
    ax.set_ylabel(f"{STREAM_TITLES[stream]}\ndMel channel", fontsize=9)


def _panel(ax: Any, kind: str, sample: Mapping[str, Any], streams: Sequence[str], span_s: float, width_px: int) -> None:
    """Draw one panel (a kind of _panel_rows) of a window of len(labels) micro-turns; `span_s`: seconds shown."""
    labels = sample["labels.npy"]
    x_max = len(labels) * MICROTURN_S
    if kind.startswith("dmel:"):
        _dmel_panel(ax, sample[f"{kind[5:]}.dmel.npy"], kind[5:])
    elif kind.startswith("words:"):
        s = kind[6:]
        _word_rows(ax, [w for w in sample.get("words.json", []) if w.get("stream") == s], STREAM_COLOURS[s], x_max)
        ax.set_ylabel(f"{s} words", fontsize=9)
    elif kind == "bands":
        _bands(ax, labels, sample["activity.npy"], streams)
    elif kind == "targets":
        _targets(ax, sample["targets.json"])
    elif kind == "events":
        _event_marks(ax, sample.get("events.json"))
    elif kind == "frames":
        _thumbnails(ax, sample.get("frames"), sample.get("frame_mask"), span_s, width_px)


def render_sample(
    sample: Mapping[str, Any],
    out: str,
    *,
    width_px: int = 3000,
    height_px: int = 1400,
    dpi: int = 100,
    start_s: float | None = None,
    end_s: float | None = None,
) -> None:
    """Draw `sample` (decoded members, as load_sample returns) to the PNG `out` of width_px x height_px; the time
    axis shows seconds [start_s, end_s) of the window (default: all of it)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if width_px < 200 or height_px < 200:
        raise ValueError(f"the picture needs at least 200 x 200 px, got {width_px} x {height_px}")
    meta, labels = sample["meta.json"], sample["labels.npy"]
    mask = sample.get("mask.npy", np.ones(len(labels), dtype=np.uint8))
    w_len = len(labels)
    x_max = w_len * MICROTURN_S
    lo, hi = start_s or 0.0, x_max if end_s is None else min(end_s, x_max)
    if not 0 <= lo < hi:
        raise ValueError(f"empty time range [{lo}, {hi}) s; the window spans [0, {x_max:g}) s")
    streams = [s for s in ("output", "input", "others") if f"{s}.dmel.npy" in sample]
    rows = _panel_rows(sample, streams)
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    axes = fig.subplots(len(rows), 1, sharex=True, gridspec_kw={"height_ratios": [r[1] for r in rows]})
    axes = np.atleast_1d(axes)
    fig.subplots_adjust(
        left=130 / width_px, right=1 - 20 / width_px, top=1 - 45 / height_px, bottom=75 / height_px, hspace=0.12
    )  # margins in pixels: the labels keep their size
    fig.suptitle(_title(meta), fontsize=12)
    for ax, (kind, _) in zip(axes, rows, strict=True):
        _panel(ax, kind, sample, streams, hi - lo, width_px)
        _grid(ax, x_max)
        valid = int(np.sum(mask))
        if valid < w_len:
            ax.axvspan(valid * MICROTURN_S, x_max, color="#bbbbbb", alpha=0.5, lw=0)
    axes[-1].set_xticks(np.arange(0, x_max + 1e-9, 1.0 if hi - lo <= 40 else 5.0))
    axes[-1].set_xlim(lo, hi)
    axes[-1].set_xlabel("seconds from the window start (thin lines: 200 ms micro-turns)")
    handles = [Patch(color=c, label=n) for n, c in BAND_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.savefig(out, format="png", dpi=dpi)


def _targets(ax: Any, targets: Sequence[Mapping[str, Any]]) -> None:
    """Proactive targets: each window [start, end] as a bar, the due time as a tick, the text and category beside."""
    ax.set_ylim(0, 3.3)
    ax.set_yticks([])
    ax.set_ylabel("targets", fontsize=9)
    for i, t in enumerate(sorted(targets, key=lambda t: t["due_s"])):
        y = 2.5 - (i % 3)
        ax.add_patch(_rect(t["start_s"], y - 0.45, t["end_s"] - t["start_s"], 0.5, "#f2b134"))
        ax.vlines(t["due_s"], y - 0.5, y + 0.1, colors="#b3261e", lw=1.5)
        ax.text(max(t["due_s"], 0.0), y + 0.1, f"{t['text']} ({t['category']})", fontsize=7, va="bottom", clip_on=True)


def _event_marks(ax: Any, events: Sequence[Mapping[str, Any]]) -> None:
    """Timed events (schemas/events.py): the model's acts (targets) above, arrivals below, in their micro-turns."""
    for i, e in enumerate(events):
        y = 1 if e["side"] == "output" else 0
        colour = STREAM_COLOURS["output" if y else "input"]
        ax.add_patch(_rect(e["microturn"] * MICROTURN_S, y + 0.1, MICROTURN_S, 0.8, colour))
        label = e["kind"] if e["kind"] == e["name"] else f"{e['kind']}: {e['name']}"
        ax.text(e["time_s"], y + 0.5 + 0.25 * (i % 2 - 0.5), label[:40], fontsize=7, va="center")
    ax.set_ylim(0, 2)
    ax.set_yticks([0.5, 1.5], ["arrivals", "model acts"], fontsize=8)
    ax.set_ylabel("events", fontsize=9)


def _bands(ax: Any, labels: np.ndarray, activity: np.ndarray, streams: Sequence[str]) -> None:
    names = list(BAND_COLOURS)
    n = len(names)
    both = LABEL_BITS["input_speech"] | LABEL_BITS["output_speech"]
    for row, name in enumerate(names):
        y = n - 1 - row
        on = (labels & both) == both if name == "overlap" else (labels & LABEL_BITS[name]) > 0
        for k in np.flatnonzero(on):
            ax.add_patch(_rect(k * MICROTURN_S, y + 0.1, MICROTURN_S, 0.8, BAND_COLOURS[name]))
    for col, s in enumerate(("input", "others", "output")):
        if s in streams or s != "others":
            level = activity[:, col] * (n / 3)
            ax.step(
                np.arange(len(level) + 1) * MICROTURN_S,
                np.append(level, level[-1]) + n,
                where="post",
                color=STREAM_COLOURS[s],
                lw=1,
            )
    ax.set_ylim(0, n + n / 3 + 0.2)
    ax.set_yticks([n - 1 - i + 0.5 for i in range(n)] + [n + n / 6], names + ["activity"], fontsize=7)


def _rect(x: float, y: float, w: float, h: float, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, color=colour, lw=0)


def _thumbnails(ax: Any, frames: np.ndarray, mask: np.ndarray | None, span_s: float, width_px: int) -> None:
    """One frame every n micro-turns, n chosen so a thumbnail is about 80 px wide; each is drawn from the start of
    its micro-turn (the frame is the one on screen at that micro-turn's end, DESIGN.md §3). Masked: not drawn."""
    px_per_s = width_px * 0.9 / max(span_s, MICROTURN_S)
    every = max(1, math.ceil(80 / (px_per_s * MICROTURN_S)))
    for k in range(0, len(frames), every):
        if mask is None or mask[k]:
            ax.imshow(frames[k], extent=(k * MICROTURN_S, (k + every) * MICROTURN_S, 0, 1), aspect="auto")
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("video", fontsize=9)
