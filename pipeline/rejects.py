"""The rejected list: every input that did not make it, with the stage and a readable reason.

    python -c "from pipeline.rejects import Rejection; print(Rejection(input='x', stage='decode', reason='empty'))"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

STAGES = ("read", "decode", "align", "featurise", "label", "write")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    input: str  # where the input came from: bundle.json path, manifest:line, moshi json, directory
    stage: str
    reason: str
    conversation_id: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {STAGES}")

    def to_row(self) -> dict:
        return asdict(self)
