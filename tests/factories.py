"""Factories for tiny generated test inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def tone(seconds: float, *, rate: int = 16_000, freq: float = 220.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, float32 mono."""
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def make_bundle(
    directory: Path,
    *,
    conv_id: str = "conv",
    seconds: float = 3.0,
    rate: int = 16_000,
    words: list[dict] | None = None,
    fmt: str = "wav",
) -> Path:
    """A two-speaker bundle (A.wav, B.wav) with a short exchange; returns the bundle directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, speaker in enumerate("AB"):
        sf.write(directory / f"{speaker}.{fmt}", tone(seconds, rate=rate, freq=200 + 150 * i, seed=i), rate)
    if words is None:
        words = [
            {"text": "hello", "start": 0.10, "end": 0.50, "speaker": "A"},
            {"text": "there", "start": 0.55, "end": 1.00, "speaker": "A"},
            {"text": "hi", "start": 1.45, "end": 1.80, "speaker": "B"},
        ]
    bundle = {
        "id": conv_id,
        "language": "en",
        "source": "test",
        "licence": "CC0-1.0",
        "tracks": [{"speaker": "A", "path": f"A.{fmt}"}, {"speaker": "B", "path": f"B.{fmt}"}],
        "words": words,
    }
    (directory / "bundle.json").write_text(json.dumps(bundle))
    return directory


def gander_turn(role: str, start_ms: float, end_ms: float, **extra: object) -> dict:
    """One turn of a Gander conversation (schemas/gander.py): `role`, times in ms, other keys as given."""
    return {"role": role, "start_ms": start_ms, "end_ms": end_ms, **extra}
