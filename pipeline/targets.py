"""Cut a conversation's proactive targets (schemas/targets.py) into one window: times relative to the window start,
and the window micro-turns of each target's due time and window.

    python -c "from schemas.targets import make_target; from pipeline.targets import window_targets; \
print(window_targets([make_target(id='t', family='timed', category='timed_oneshot', text='now', due_s=3.05)], \
output_speaker='model', first=10, stop=20, total=50))"

Micro-turns follow the model side of DESIGN.md §3: the due time goes in the micro-turn that contains it (a model
word is placed where it starts). The window [start, end] touches micro-turns floor(start / 0.2) .. ceil(end / 0.2)
(exclusive), clipped to the conversation and to the sample window. A target is in a sample when its window or due
time overlaps the sample's span [first, stop) micro-turns; only targets of the perspective's model speaker (or of
no named speaker) are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.targets import SampleTarget, Target
from schemas.units import microturn_of_seconds, microturn_start_s, microturn_stop_of_seconds


def window_targets(
    targets: Sequence[Target], *, output_speaker: str, first: int, stop: int, total: int
) -> tuple[SampleTarget, ...]:
    """The targets of micro-turns [first, stop) of a conversation of `total` micro-turns, seen by `output_speaker`.

    Args:
        targets: the conversation's targets (seconds from its start).
        output_speaker: the speaker playing the model in this perspective.
        first, stop: the window's conversation micro-turns (stop exclusive, <= total).
        total: the conversation's micro-turn count.
    """
    t0 = microturn_start_s(first)
    t1 = microturn_start_s(stop)
    out = []
    for t in targets:
        if t.speaker is not None and t.speaker != output_speaker:
            continue
        if t.end_s < t0 or t.start_s >= t1:
            continue
        lo = min(microturn_of_seconds(t.start_s), total)
        hi = min(microturn_stop_of_seconds(t.end_s), total)
        hi = max(hi, min(lo + 1, total))  # a zero-length window still touches its micro-turn
        due = microturn_of_seconds(t.due_s)
        out.append(
            SampleTarget(
                id=t.id,
                family=t.family,
                category=t.category,
                text=t.text,
                speaker=output_speaker,
                due_s=round(t.due_s - t0, 6),
                start_s=round(t.start_s - t0, 6),
                end_s=round(t.end_s - t0, 6),
                due_microturn=due - first if first <= due < stop else None,
                start_microturn=min(max(lo, first), stop) - first,
                end_microturn=min(max(hi, first), stop) - first,
                count=t.count,
                cycle_end_s=None if t.cycle_end_s is None else round(t.cycle_end_s - t0, 6),
            )
        )
    return tuple(out)
