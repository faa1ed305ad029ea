"""The Beam coder of the values that flow between the job's stages: decoded, aligned, featurised and labelled
conversations, each holding megabytes of audio and dMel arrays.

    python -c "import numpy as np, pipeline.runner.coders as c; print(c.estimated_bytes({'a': np.zeros(8)}))"  # 128

Beam's runners sample the size of the elements every step outputs (for their metrics) by encoding them with the
output's coder. Without a declared type that coder is Beam's generic one, which pickles the whole value: on an hour
of stereo audio that was ~940 MB of pickling per run, a quarter of the job's CPU, for a number nobody reads.
`StageValueCoder` pickles (protocol 5) only when a value really has to cross a process or a fusion break, and
estimates sizes from the arrays a value holds. `register_stage_coders` makes Beam use it for the stage types; the
job declares each stage's output type (`with_output_types`).
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
import numpy as np

OBJECT_BYTES = 64
"""Size estimate of anything that is not an array (a field, a word, a string): a rough constant."""
MAX_DEPTH = 4


def estimated_bytes(value: Any, depth: int = MAX_DEPTH) -> int:
    """A cheap size estimate in bytes: the arrays' `nbytes` found through dataclass fields and mapping values
    (`depth` levels down), plus OBJECT_BYTES per other object; sequences count OBJECT_BYTES per item, unvisited."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if depth == 0:
        return OBJECT_BYTES
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return OBJECT_BYTES + sum(estimated_bytes(getattr(value, f.name), depth - 1) for f in fields)
    if isinstance(value, Mapping):
        return OBJECT_BYTES + sum(estimated_bytes(v, depth - 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return OBJECT_BYTES * (1 + len(value))
    return OBJECT_BYTES


class StageValueCoder(beam.coders.Coder):
    """Pickle (protocol 5: arrays without an extra copy) to encode; `estimated_bytes` to estimate."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=5)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def estimate_size(self, value: Any) -> int:
        return estimated_bytes(value)

    def is_deterministic(self) -> bool:
        return False  # values only, never grouping keys

    def to_type_hint(self) -> Any:
        return Any


def register_stage_coders(*types: type) -> None:
    """Use StageValueCoder for PCollections whose declared element type is one of `types` (idempotent)."""
    for t in types:
        beam.coders.registry.register_coder(t, StageValueCoder)
