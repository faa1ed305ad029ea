"""Write a synthesised conversation as an input bundle: 16-bit audio per speaker, ``bundle.json``, ``planted.json``.

    python -c "import numpy as np; from synth.timeline import Placement, place_words; \
from synth.bundle_writer import write_bundle; t = place_words([Placement(speaker='A', text='hi', \
audio=np.full(800, 0.1, np.float32), start_sample=400)], sample_rate_hz=8000, tail_samples=400); \
print(write_bundle('/tmp/microturn-bundle', conv_id='x', timeline=t, planted={'events': []}, source='demo'))"

Used by ``synth.demo`` and ``synth.refusals``. The audio is one ``{speaker}.wav`` per track (16-bit PCM at the
timeline's rate), or one stereo ``both.flac`` with a channel per speaker; JSON files are indented by 2 and end in
a newline, so the same conversation gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from schemas.bundle import Annotation, Conversation, Track, conversation_to_dict
from synth.timeline import Timeline


def pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (clipped outside) as int16, rounded to the nearest step of 1/32767."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


def write_json(path: Path, obj: Any) -> None:
    """`obj` as JSON indented by 2, with a final newline, UTF-8."""
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_bundle(
    bundle_dir: str | Path,
    *,
    conv_id: str,
    timeline: Timeline,
    planted: Mapping[str, Any],
    source: str,
    stereo: bool = False,
    model_speakers: tuple[str, ...] | None = None,
    tags: Mapping[str, str] | None = None,
    annotations: tuple[Annotation, ...] = (),
    extra: Mapping[str, Any] | None = None,
    split: str = "train",
) -> Path:
    """Write one bundle directory (created if missing; files there are overwritten).

    Args:
        bundle_dir: the bundle's directory; track paths in ``bundle.json`` are relative to it.
        conv_id: the conversation id.
        timeline: the tracks (speakers in track order) and words; words go inline into ``bundle.json``.
        planted: what the generator planted (``{"events": [...], ...}``), written as ``planted.json``.
        source: the bundle's ``source``; language is ``en`` and licence ``CC0-1.0``.
        stereo: one ``both.flac`` (channel i = i-th speaker) instead of one WAV per speaker.
        model_speakers, tags, annotations, extra: passed to the bundle as they are.
        split: the bundle's split hint (``train`` unless the generator holds the conversation out).
    Returns:
        The path of ``bundle.json``.
    """
    out = Path(bundle_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = out.as_posix()
    rate = timeline.sample_rate_hz
    speakers = list(timeline.tracks)
    if stereo:
        audio = np.stack([pcm16(timeline.tracks[s]) for s in speakers], axis=1)
        sf.write(out / "both.flac", audio, rate, subtype="PCM_16", format="FLAC")
        tracks = tuple(Track(speaker=s, path=f"{base}/both.flac", channel=c) for c, s in enumerate(speakers))
    else:
        for s in speakers:
            sf.write(out / f"{s}.wav", pcm16(timeline.tracks[s]), rate, subtype="PCM_16", format="WAV")
        tracks = tuple(Track(speaker=s, path=f"{base}/{s}.wav") for s in speakers)
    conv = Conversation(
        id=conv_id,
        origin=f"{base}/bundle.json",
        tracks=tracks,
        words=timeline.words,
        language="en",
        source=source,
        licence="CC0-1.0",
        split=split,
        model_speakers=model_speakers,
        tags=dict(tags or {}),
        annotations=annotations,
        extra=dict(extra or {}),
    )
    write_json(out / "bundle.json", conversation_to_dict(conv, base=base))
    write_json(out / "planted.json", dict(planted))
    return out / "bundle.json"
