"""What the proactive generators share (``microturn synth timed | cue | visual``): voices, a two-party script on
one sample clock that collects targets, and the loop that writes bundles, ``truth.jsonl`` and ``summary.json``.

    python -c "from synth.proactive import number_words; print(number_words(115))"

Every generator writes under ``--out``:

- ``bundles/<id>/bundle.json`` (+ ``user.wav``, ``model.wav`` at 22,050 Hz, ``video.mp4`` for visual): an ordinary
  input bundle with ``model_speakers: ["model"]``, a ``targets`` list (schemas/targets.py) and tags ``synth``
  (the family), ``task`` (the example's kind, e.g. ``oneshot``), ``seed``, ``user_voice``, ``model_voice``;
  the model's track speaks every target's text at its due time (the training signal), ``planted.json`` repeats the
  targets;
- ``truth.jsonl``: per conversation ``{"conversation_id", "words": [{"text", "start", "end"}]}``, the model's own
  words: the response format of ``microturn eval proactive`` (scoring it gives 100 %);
- ``summary.json``: examples, targets per category, hours, CPU seconds (this process and its espeak-ng / ffmpeg
  children) and examples per CPU minute.

Example ``i`` draws everything from a generator seeded by (family, seed, i): the same seed and options give the
same bytes, and example ``i`` does not depend on ``--count``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.targets import Target, make_target, target_to_dict
from synth.bundle_writer import write_bundle, write_json
from synth.planner import BASE_RULES, TimelinePlanner, Utterance
from synth.refusals import DEFAULT_MODEL_VOICES, DEFAULT_USER_VOICES, VOICE_PRESETS, make_backends
from synth.timeline import Placement, Timeline, place_words

USER, MODEL = "user", "model"
RULES: dict[str, Any] = {**BASE_RULES, "pause_s": (0.3, 0.8), "tail_s": 1.0}

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 1000 in English words, e.g. 115 -> 'one hundred fifteen'."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words covers 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


@dataclass(kw_only=True)
class Script:
    """A user and a model on one sample clock (the planner's); words and targets collected as they are placed."""

    planner: TimelinePlanner
    placements: list[Placement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    free: dict[str, int] = field(default_factory=lambda: {USER: 0, MODEL: 0})  # first sample each speaker is free

    @property
    def rng(self) -> random.Random:
        return self.planner.rng

    def samples(self, seconds: float) -> int:
        return self.planner.samples(seconds)

    def seconds(self, sample: int) -> float:
        return self.planner.seconds(sample)

    def say(self, speaker: str, text: str, start: int, *, limit: int | None = None) -> Utterance | None:
        """Speak `text` (words split on spaces) from sample `start` (moved to when the speaker is free); None and
        nothing placed when it would end after sample `limit`."""
        u = self.planner.speak(speaker, [text.split()], max(start, self.free[speaker]))
        if limit is not None and u.end > limit:
            return None
        self.placements += u.words
        self.free[speaker] = u.end + self.samples(0.05)
        return u

    def sentences(self, speaker: str, lines: Sequence[str], start: int, *, limit: int) -> int:
        """Speak lines one after another (pauses drawn from ``pause_s``) while they end before `limit`; returns
        where the last one ended (`start` if none fitted)."""
        t = end = start
        for line in lines:
            u = self.say(speaker, line, t, limit=limit)
            if u is None:
                break
            end = u.end
            t = u.end + self.planner.uniform("pause_s")
        return end

    def target(
        self,
        *,
        family: str,
        category: str,
        text: str,
        due: int,
        before_s: float,
        after_s: float,
        count: int | None = None,
        cycle_end_s: float | None = None,
    ) -> Target:
        """The model says `text` from sample `due` (or when it is free, if later: the target's due time follows)
        and the target is recorded with the window [due - before_s, due + after_s]."""
        u = self.say(MODEL, text, due)
        assert u is not None
        t = make_target(
            id=f"t{len(self.targets)}",
            family=family,
            category=category,
            text=text,
            due_s=self.seconds(u.start),
            before_s=before_s + self.seconds(u.start - due),
            after_s=after_s,
            count=count,
            cycle_end_s=cycle_end_s,
        )
        self.targets.append(t)
        return t

    def timeline(self, *, min_samples: int = 0) -> Timeline:
        """The two tracks, ``tail_s`` of silence after the last word, at least `min_samples` long."""
        end = max((p.end_sample for p in self.placements), default=0)
        tail = max(self.samples(self.planner.rules["tail_s"]), min_samples - end)
        return place_words(self.placements, sample_rate_hz=self.planner.rate, tail_samples=tail, speakers=[USER, MODEL])


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """What a family's `make` returns for one conversation."""

    timeline: Timeline
    targets: tuple[Target, ...]
    task: str  # the example's kind within its family (a tag)
    tags: dict[str, str] = field(default_factory=dict)  # more tags
    video: str | None = None  # the video file name inside the bundle directory


Make = Callable[[Script, Path, str], Example]
"""(script with its rng, bundle directory, conversation id) -> Example; writes any extra files itself."""


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def generate(
    family: str,
    make: Make,
    out_dir: str | Path,
    *,
    seed: int = 0,
    count: int = 10,
    user_voices: Sequence[str] = DEFAULT_USER_VOICES,
    model_voices: Sequence[str] = DEFAULT_MODEL_VOICES["espeak"],
) -> dict[str, Any]:
    """Write `count` examples of `family` under `out_dir` (see the module docstring); returns the summary."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    unknown = [v for v in (*user_voices, *model_voices) if v not in VOICE_PRESETS]
    if unknown:
        raise ValueError(f"unknown voice(s) {unknown}; choose from {sorted(VOICE_PRESETS)}")
    users, models = [VOICE_PRESETS[v] for v in user_voices], [VOICE_PRESETS[v] for v in model_voices]
    backends = make_backends([*users, *models])
    out = Path(out_dir)
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    truth, per_category, per_task, audio_s = [], Counter(), Counter(), 0.0
    for i in range(count):
        rng = random.Random(f"microturn-{family}/{seed}/{i}")
        user, model = rng.choice(users), rng.choice(models)
        planner = TimelinePlanner(
            {USER: backends[user.engine], MODEL: backends[model.engine]},
            {USER: user.voice, MODEL: model.voice},
            rng,
            RULES,
        )
        conv_id = f"{family}-s{seed}-{i:06d}"
        bundle_dir = out / "bundles" / conv_id
        bundle_dir.mkdir(parents=True, exist_ok=True)
        ex = make(Script(planner=planner), bundle_dir, conv_id)
        targets = [target_to_dict(t) for t in ex.targets]
        extra: dict[str, Any] = {"targets": targets}
        if ex.video is not None:
            extra["video"] = {"path": ex.video}
        write_bundle(
            bundle_dir,
            conv_id=conv_id,
            timeline=ex.timeline,
            planted={"targets": targets},
            source=f"microturn-synth-{family}",
            model_speakers=(MODEL,),
            tags={
                "synth": family,
                "task": ex.task,
                "seed": str(seed),
                "user_voice": user.voice.voice_id,
                "model_voice": model.voice.voice_id,
                **ex.tags,
            },
            extra=extra,
        )
        words = [{"text": w.text, "start": w.start_s, "end": w.end_s} for w in ex.timeline.words if w.speaker == MODEL]
        truth.append(json.dumps({"conversation_id": conv_id, "words": words}))
        per_category.update(t.category for t in ex.targets)
        per_task[ex.task] += 1
        audio_s += ex.timeline.duration_s
    cpu_s, wall_s = _cpu_s() - cpu0, time.perf_counter() - wall0
    (out / "truth.jsonl").write_text("".join(line + "\n" for line in truth), encoding="utf-8")
    summary = {
        "family": family,
        "examples": count,
        "seed": seed,
        "per_task": dict(sorted(per_task.items())),
        "targets_per_category": dict(sorted(per_category.items())),
        "hours": round(audio_s / 3600, 6),
    }
    write_json(out / "summary.json", summary)
    summary |= {
        "cpu_s": round(cpu_s, 2),
        "wall_s": round(wall_s, 2),
        "examples_per_cpu_minute": round(60 * count / cpu_s, 1) if cpu_s else None,
    }
    return summary
