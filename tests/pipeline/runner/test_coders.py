"""pipeline/runner/coders.py: the stage values' coder round-trips, estimates sizes without encoding, and keeps Beam from
pickling megabytes of audio per element to sample sizes for its metrics."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.align import AlignedConversation
from pipeline.decode import DecodedConversation
from pipeline.features import FeaturisedConversation
from pipeline.job import run
from pipeline.labels import LabelledConversation
from pipeline.runner.coders import OBJECT_BYTES, StageValueCoder, estimated_bytes
from schemas.bundle import Conversation, Track

from ...factories import make_bundle

STAGE_VALUES = (DecodedConversation, AlignedConversation, FeaturisedConversation, LabelledConversation)


def _decoded(seconds: float = 2.0) -> DecodedConversation:
    n = int(seconds * 16_000)
    conv = Conversation(
        id="c", origin="c/bundle.json", tracks=(Track(speaker="A", path="A.wav"), Track(speaker="B", path="B.wav"))
    )
    streams = {"A": np.full(n, 0.25, dtype=np.float32), "B": np.linspace(-1, 1, n, dtype=np.float32)}
    return DecodedConversation(conversation=conv, streams=streams, num_samples=n, track_samples={"A": n, "B": n})


def test_coder_round_trips_a_stage_value() -> None:
    value = _decoded()
    coder = StageValueCoder()
    back = coder.decode(coder.encode(value))
    assert back.conversation == value.conversation and back.num_samples == value.num_samples
    assert back.streams.keys() == value.streams.keys()
    for name in value.streams:
        np.testing.assert_array_equal(back.streams[name], value.streams[name])


def test_estimate_counts_the_arrays_without_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    value = _decoded(seconds=10.0)
    arrays = sum(a.nbytes for a in value.streams.values())
    monkeypatch.setattr(pickle, "dumps", lambda *a, **k: pytest.fail("the estimate must not encode"))
    size = StageValueCoder().estimate_size(value)
    assert arrays <= size <= arrays + 100 * OBJECT_BYTES
    assert estimated_bytes({"a": np.zeros(8)}) == OBJECT_BYTES + 64


def test_an_in_process_run_never_pickles_a_stage_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the stage outputs were typed, Beam pickled the first ~30 elements of every step whole (and a decreasing
    share after) only to estimate their size; on the in-process runner nothing crosses a process, so no stage value
    should be pickled at all."""
    for i in range(3):
        make_bundle(tmp_path / "in" / f"c{i}", conv_id=f"c{i}", seconds=2.0)
    pickled: Counter[str] = Counter()
    real_dumps = pickle.dumps

    def spy(obj, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - pickle.dumps' own signature
        pickled[type(obj).__name__] += 1
        return real_dumps(obj, *args, **kwargs)

    monkeypatch.setattr(pickle, "dumps", spy)
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--window_microturns", "4"])
    assert manifest["counts"]["conversations_written"] == 3
    assert pickled  # the spy sees Beam's pickling (small values: inputs, part summaries)
    assert not {t.__name__ for t in STAGE_VALUES} & set(pickled), pickled
