"""A small synthetic micro-turn dataset from a seeded generator: byte-reproducible, no TTS or pipeline involved.

    python -c "from tests.trainer.synthetic import write_dataset; print(write_dataset('/tmp/synth', seed=0))"

Only the members the trainer reads are written (mask, input/output dMel, words); the output stream follows the input
one micro-turn late (plus noise) and speaks words from a small vocabulary, so there is something to learn. Shards
are written with fixed member headers (schemas.shard.FIXED_MTIME), so equal seeds give equal bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import webdataset as wds

from schemas.dmel import DMEL_CHANNELS, DMEL_LEVELS, FRAMES_PER_MICROTURN
from schemas.sample import WindowMeta, WindowPerspective, WindowSample, WindowWord
from schemas.shard import FIXED_MTIME, FORMAT_VERSION
from schemas.units import MICROTURN_S, SAMPLES_PER_MICROTURN

VOCAB = ("yes", "no", "okay", "right", "hello", "sure", "well", "so", "uh", "mm")


def make_sample(rng: np.random.Generator, window: int, key: str = "synth_00000") -> dict[str, bytes]:
    """One stored window's members (format 3): speaker 'output' (row 0) plays the model, 'input' (row 1) the user;
    (W, 16, 80) uint8 dMel codes, (W,) mask (a padded tail), and words; labels all zero."""
    frames = window * FRAMES_PER_MICROTURN
    walk = np.cumsum(rng.integers(-1, 2, size=(frames + FRAMES_PER_MICROTURN, DMEL_CHANNELS)), axis=0)
    level = np.clip(walk + rng.integers(3, 12, size=DMEL_CHANNELS), 0, DMEL_LEVELS - 1)
    input_dmel = level[FRAMES_PER_MICROTURN:].reshape(window, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
    delayed = level[:frames] + (rng.random((frames, DMEL_CHANNELS)) < 0.1)
    output_dmel = np.clip(delayed, 0, DMEL_LEVELS - 1).reshape(window, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
    mask = np.ones(window, np.uint8)
    mask[window - int(rng.integers(0, window // 4)) :] = 0
    words = []
    for k in range(window):
        for stream in ("input", "output"):
            if rng.random() < 0.5:
                start = round(k * MICROTURN_S, 3)
                words.append(
                    WindowWord(
                        text=VOCAB[int(rng.integers(len(VOCAB)))],
                        speaker=stream,
                        start_s=start,
                        end_s=start,
                        heard_microturn=k,
                        spoken_microturn=k,
                        source="human",
                        score=None,
                    )
                )
    real = int(mask.sum())
    meta = WindowMeta(
        format_version=FORMAT_VERSION,
        key=key,
        conversation_id="synth",
        conversation_key="synth",
        window=0,
        start_microturn=0,
        num_microturns=real,
        window_microturns=window,
        last_valid_samples=SAMPLES_PER_MICROTURN,
        conversation_samples=real * SAMPLES_PER_MICROTURN,
        speakers=("output", "input"),
        perspectives=(
            WindowPerspective(perspective="output", input=1, output=0, others=(), others_row=None, interruptions=()),
        ),
        language="en",
        source="synthetic",
        licence="CC0-1.0",
        split="train",
        tags={},
        video=None,
    )
    record = WindowSample(
        meta=meta,
        dmel=np.stack([output_dmel, input_dmel]).astype(np.uint8),
        others_dmel=None,
        activity=np.zeros((window, 2), np.float32),
        others_activity=None,
        labels=np.zeros((1, window), np.uint8),
        floor=np.full((1, window), -1, np.int16),
        mask=mask,
        words=tuple(words),
    )
    return record.to_members()


def write_dataset(directory: str | Path, *, seed: int = 0, samples: int = 4, window: int = 24, shards: int = 2) -> str:
    """Write `samples` windows of `window` micro-turns round-robin into `shards` shards + manifest.json.

    Returns: the SHA-256 of the shards' bytes (in name order), which only the arguments determine.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    members = [make_sample(rng, window, f"synth_{j:05d}") for j in range(samples)]
    names = [f"shard-{i:05d}.tar" for i in range(shards)]
    digest = hashlib.sha256()
    for i, name in enumerate(names):
        with wds.TarWriter(str(out / name), encoder=False, mtime=FIXED_MTIME) as writer:
            for j in range(i, samples, shards):
                writer.write({"__key__": f"synth_{j:05d}", **members[j]})
        digest.update((out / name).read_bytes())
    (out / "manifest.json").write_text(json.dumps({"shards": [{"name": n} for n in names]}), encoding="utf-8")
    return digest.hexdigest()
