"""Export evaluation clips of held-out conversations in Full-Duplex-Bench's layout.

    microturn export fdbench demo-out/ds-audio --out fdbench --speaker_scope conversation --eval_fraction 0.4

Full-Duplex-Bench (github.com/DanielLin94144/Full-Duplex-Bench, v1.0 and v1.5) gives a model one folder per clip
and scores what the model says back. What this export follows, file by file:

- `input.wav`: the user stream only, 16 kHz mono 16-bit ("Audio stream of user speech, intended as model input",
  their dataset README). Here it is the dataset's `input.flac` member (so the dataset must be written with
  `--keep_audio`), cut from the conversation; after the moment where the model should act it is digital silence.
- v1.0 task files, one JSON list with one object, times in seconds from the clip start:
  - `pause.json`: `[{"text": "[PAUSE]", "timestamp": [pause_start, pause_end]}]` (pause handling: the user pauses
    inside their turn and goes on; the model should not take the turn);
  - `turn_taking.json`: `[{"text": "[TURN-TAKING]", "timestamp": [user_turn_end, clip_end]}]` (smooth turn-taking;
    their evaluation reads `timestamp[0]` as the end of the user's turn and measures latency from it);
  - `interrupt.json`: `[{"context": str, "interrupt": str, "timestamp": [start, end]}]` (user interruption; their
    evaluation reads `context`, `interrupt` and `timestamp[1]`, the end of the interrupting utterance);
  - `transcription.json`: `[{"speaker": 0, "item": [{"text": word, "timestamp": [start, end]}, ...]}]`, the words
    heard in input.wav (speaker 0 = the user, the only voice in input.wav). This shape is the one the microturn
    issue gives; it could not be checked against a released file.
- v1.5 overlap tasks (user_interruption, user_backchannel): `input.wav`, `clean_input.wav` (the same audio with the
  overlapping utterance replaced by silence, their paired control) and `metadata.json` with the fields their v1.5
  evaluation reads: `{"context_text", "current_turn_text", "timestamps": [start, end]}` of the overlapping
  utterance.

Folders: `DIR/v1/{pause_handling,smooth_turn_taking,user_interruption}/{clip}/` and
`DIR/v1_5/{user_interruption,user_backchannel}/{clip}/` (the task names of their `evaluate.py --task`), where
`{clip}` is `{conversation}_{perspective}_{micro-turn:05d}`. Nothing else is written inside the task folders (their
scripts list every entry there as a clip); `DIR/clips.jsonl` (one line per clip: where it comes from in the
conversation, in seconds and samples, and the sample keys) and `DIR/split.json` (the split used) sit beside them.

Not exported: v1.0 backchannel (ICC) and v1.5 talking_to_other / background_speech (they need a third party's
audio mixed into the user stream); context.wav / interrupt.wav of the synthetic v1.0 interruptions.

Events are found with the pipeline's own definitions (pipeline.labels, thresholds from manifest.json) on the
conversation's words, for each perspective: the perspective's user is the Full-Duplex-Bench user, its model side
is the model under test.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import posixpath
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import soundfile as sf
from apache_beam.io.filesystems import FileSystems

from pipeline.inspect import load_sample
from pipeline.labels import Event, Ipu, LabelConfig, detect_events, ipus
from pipeline.split import add_split_arguments, load_split, read_index_rows, split_dataset
from schemas.bundle import Word
from schemas.tables import MANIFEST_FILE
from schemas.units import SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN, samples_to_seconds, seconds_to_samples

logger = logging.getLogger(__name__)

TASKS = {
    ("v1", "pause_handling"): "pause.json",
    ("v1", "smooth_turn_taking"): "turn_taking.json",
    ("v1", "user_interruption"): "interrupt.json",
    ("v1_5", "user_interruption"): "metadata.json",
    ("v1_5", "user_backchannel"): "metadata.json",
}
"""(version folder, task) -> the task's timing file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportConfig:
    context_s: float = 10.0  # seconds of conversation kept before the event (extended to a word's start)
    response_s: float = 5.0  # seconds of silence after the user's last kept sound, for the model to act
    pause_min_s: float = 0.8  # shortest within-turn pause of the user that makes a pause_handling clip
    max_per_task: int = 200  # clips per task at most, chosen by a stable hash of the clip id

    def __post_init__(self) -> None:
        if self.context_s < 0 or self.response_s <= 0 or self.pause_min_s <= 0 or self.max_per_task < 1:
            raise ValueError(
                f"bad export configuration {self}: context_s >= 0, response_s > 0, pause_min_s > 0 "
                "and max_per_task >= 1 are needed"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Clip:
    """One clip, in 16 kHz samples of the conversation: [start, end) is the clip, user audio is kept in
    [start, audio_end) and silence follows; [event_start, event_end) is the pause / interrupting utterance /
    backchannel, or for turn-taking [user turn end, end)."""

    version: str
    task: str
    clip_id: str
    start: int
    end: int
    audio_end: int
    event_start: int
    event_end: int
    context_text: str
    event_text: str


def conversation_words(samples: Sequence[Mapping]) -> list[Word]:
    """A conversation's words in conversation seconds, from the words.json of its windows (one perspective)."""
    out = []
    for s in samples:
        t0 = s["meta.json"]["start_microturn"] * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
        for w in s["words.json"]:
            out.append(
                Word(
                    text=w["text"],
                    start_s=t0 + w["start_s"],
                    end_s=t0 + w["end_s"],
                    speaker=w["speaker"],
                    score=w.get("score"),
                    source=w.get("source", "human"),
                )
            )
    return sorted(out, key=lambda w: (w.start_s, w.end_s, w.speaker))


def user_stream(samples: Sequence[Mapping]) -> np.ndarray:
    """The user's 16 kHz audio over the whole conversation, from the input.flac of its windows in order."""
    parts = []
    for s in sorted(samples, key=lambda s: s["meta.json"]["window"]):
        if "input.flac" not in s:
            raise ValueError(
                f"sample {s['meta.json']['key']} has no input.flac member: export fdbench needs a "
                "dataset written with --keep_audio"
            )
        parts.append(s["input.flac"][: s["meta.json"]["num_microturns"] * SAMPLES_PER_MICROTURN])
    pcm = np.concatenate(parts).astype(np.float32)
    return pcm[: samples[0]["meta.json"]["conversation_samples"]]


def _text(words: Sequence[Word], user: str, a: int, b: int) -> str:
    return " ".join(w.text for w in words if w.speaker == user and a <= seconds_to_samples(w.start_s) < b)


def _clip_start(words: Sequence[Word], user: str, anchor: int, context: int) -> int:
    """`context` samples before `anchor`, moved back to the start of a user word it would cut."""
    start = max(0, anchor - context)
    for w in words:
        a, b = seconds_to_samples(w.start_s), seconds_to_samples(w.end_s)
        if w.speaker == user and a < start < b:
            start = a
    return start


def _floor_holder(units: Sequence[Ipu], events: Sequence[Event], at: int) -> str | None:
    holder = units[0].speaker if units else None
    for e in events:
        if e.kind in ("interruption", "takeover", "yield") and e.start <= at:
            holder = e.by
    return holder


def find_clips(
    words: Sequence[Word],
    *,
    user: str,
    model: str,
    speakers: Sequence[str],
    num_samples: int,
    labels: LabelConfig,
    config: ExportConfig,
    clip_prefix: str,
) -> list[Clip]:
    """Every clip of every task for one perspective (user and model are speaker ids of the conversation)."""
    units = ipus(list(speakers), words=words, segments=None, config=labels)
    events = detect_events(units, labels)
    context, response = seconds_to_samples(config.context_s), seconds_to_samples(config.response_s)
    user_units = [u for u in units if u.speaker == user]
    clips = []

    def add(version: str, task: str, anchor: int, audio_end: int, ev: tuple[int, int], end: int | None = None):
        start = _clip_start(words, user, anchor, context)
        end = audio_end + response if end is None else end
        mt = anchor // SAMPLES_PER_MICROTURN
        clips.append(
            Clip(
                version=version,
                task=task,
                clip_id=f"{clip_prefix}_{mt:05d}",
                start=start,
                end=min(end, num_samples + response),
                audio_end=min(audio_end, num_samples),
                event_start=ev[0],
                event_end=ev[1],
                context_text=_text(words, user, start, ev[0]),
                event_text=_text(words, user, ev[0], ev[1]),
            )
        )

    for e in events:
        if e.kind == "yield" and e.by == model and e.of == user:
            turn_end = e.start - e.offset
            add("v1", "smooth_turn_taking", turn_end, turn_end, (turn_end, turn_end + response))
        elif e.kind in ("interruption", "backchannel") and e.by == user and e.of == model:
            u = next(u for u in user_units if u.start == e.start)
            versions = (
                [("v1", "user_interruption"), ("v1_5", "user_interruption")]
                if e.kind == "interruption"
                else [("v1_5", "user_backchannel")]
            )
            for version, task in versions:
                add(version, task, u.start, u.end, (u.start, u.end))
    pause_min = seconds_to_samples(config.pause_min_s)
    others = [u for u in units if u.speaker != user]
    for u1, u2 in itertools.pairwise(user_units):
        if u2.start - u1.end < pause_min:
            continue
        if any(o.start < u2.start and o.end > u1.end for o in others):
            continue  # someone speaks in the pause
        if _floor_holder(units, events, u1.end) != user or _floor_holder(units, events, u2.start) != user:
            continue  # the user does not hold the floor: not a pause inside their turn
        add("v1", "pause_handling", u1.end, u2.end, (u1.end, u2.start), end=u2.end)
    return clips


def cut_audio(user_pcm: np.ndarray, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """(input, clean_input) of a clip: the user stream in [start, audio_end), silence up to end; clean_input also
    silences [event_start, event_end)."""
    out = np.zeros(clip.end - clip.start, dtype=np.float32)
    kept = user_pcm[clip.start : clip.audio_end]
    out[: len(kept)] = kept
    clean = out.copy()
    clean[max(0, clip.event_start - clip.start) : max(0, clip.event_end - clip.start)] = 0.0
    return out, clean


def _rel(x: int, clip: Clip) -> float:
    return round(samples_to_seconds(x - clip.start), 4)


def write_clip(folder: str, clip: Clip, user_pcm: np.ndarray, words: Sequence[Word], user: str) -> None:
    os.makedirs(folder, exist_ok=True)
    audio, clean = cut_audio(user_pcm, clip)
    sf.write(os.path.join(folder, "input.wav"), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    ts = [_rel(clip.event_start, clip), _rel(clip.event_end, clip)]
    files: dict[str, object] = {}
    if clip.version == "v1_5":
        sf.write(os.path.join(folder, "clean_input.wav"), clean, SAMPLE_RATE_HZ, subtype="PCM_16")
        files["metadata.json"] = {
            "context_text": clip.context_text,
            "current_turn_text": clip.event_text,
            "timestamps": ts,
        }
    elif clip.task == "pause_handling":
        files["pause.json"] = [{"text": "[PAUSE]", "timestamp": ts}]
    elif clip.task == "smooth_turn_taking":
        files["turn_taking.json"] = [{"text": "[TURN-TAKING]", "timestamp": [ts[0], _rel(clip.end, clip)]}]
    elif clip.task == "user_interruption":
        files["interrupt.json"] = [{"context": clip.context_text, "interrupt": clip.event_text, "timestamp": ts}]
    heard = [
        w
        for w in words
        if w.speaker == user
        and clip.start <= seconds_to_samples(w.start_s)
        and seconds_to_samples(w.end_s) <= clip.audio_end
    ]
    files["transcription.json"] = [
        {
            "speaker": 0,
            "item": [
                {
                    "text": w.text,
                    "timestamp": [_rel(seconds_to_samples(w.start_s), clip), _rel(seconds_to_samples(w.end_s), clip)],
                }
                for w in heard
            ],
        }
    ]
    for name, obj in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


def export_fdbench(dataset: str, out: str, *, split: Mapping, config: ExportConfig = ExportConfig()) -> list[dict]:
    """Write the clips of the split's eval conversations under `out`; return the clips.jsonl rows."""
    with FileSystems.open(posixpath.join(dataset, MANIFEST_FILE)) as f:
        manifest = json.loads(f.read().decode("utf-8"))
    if not manifest["config"].get("windows", {}).get("keep_audio"):
        raise ValueError(
            f"{dataset} was written without --keep_audio: Full-Duplex-Bench's input.wav is the user's "
            "audio, which only such datasets hold (input.flac). Rerun `microturn run --input BUNDLES "
            "--output DIR --keep_audio` and export from DIR"
        )
    labels = LabelConfig(**manifest["config"]["labels"])
    held_out = set(split["eval"]["conversations"])
    per_persp: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in read_index_rows(dataset):
        if r["conversation_id"] in held_out:
            per_persp[(r["conversation_id"], r["perspective"])].append(r)
    if not per_persp:
        raise ValueError(f"none of the split's eval conversations {sorted(held_out)[:5]} is in {dataset}")
    candidates: dict[tuple[str, str], list[tuple[Clip, dict]]] = defaultdict(list)
    sources: dict[tuple[str, str], tuple[np.ndarray, list[Word], str]] = {}
    for (conv_id, persp), rows in sorted(per_persp.items()):
        samples = [load_sample(dataset, r["key"]) for r in sorted(rows, key=lambda r: r["window"])]
        meta = samples[0]["meta.json"]
        words = conversation_words(samples)
        if not words:
            logger.warning("%s has no words: no events to export", conv_id)
            continue
        pcm = user_stream(samples)
        spk = meta["speakers"]
        user, model = spk["input"], spk["output"]
        sources[(conv_id, persp)] = (pcm, words, user)
        clips = find_clips(
            words,
            user=user,
            model=model,
            speakers=[model, user, *spk["others"]],
            num_samples=len(pcm),
            labels=labels,
            config=config,
            clip_prefix=f"{meta['conversation_key']}_{persp}",
        )
        for c in clips:
            taken = {it[0].clip_id for it in candidates[(c.version, c.task)]}
            if c.clip_id in taken:  # two events of one task in one micro-turn
                c = replace(
                    c, clip_id=next(f"{c.clip_id}_{i}" for i in range(1, 1000) if f"{c.clip_id}_{i}" not in taken)
                )
            row = {
                "version": c.version,
                "task": c.task,
                "clip": c.clip_id,
                "dir": f"{c.version}/{c.task}/{c.clip_id}",
                "conversation_id": conv_id,
                "perspective": persp,
                "user": user,
                "model": model,
                "keys": [
                    r["key"]
                    for r in rows
                    if r["start_microturn"] * SAMPLES_PER_MICROTURN < c.end
                    and (r["start_microturn"] + r["num_microturns"]) * SAMPLES_PER_MICROTURN > c.start
                ],
                "start_s": samples_to_seconds(c.start),
                "end_s": samples_to_seconds(c.end),
                "audio_end_s": samples_to_seconds(c.audio_end),
                **{
                    f"{k}_sample": v
                    for k, v in asdict(c).items()
                    if k in ("start", "end", "audio_end", "event_start", "event_end")
                },
            }
            candidates[(c.version, c.task)].append((c, row))
    os.makedirs(out, exist_ok=True)
    written = []
    for _, items in sorted(candidates.items()):
        chosen = sorted(items, key=lambda it: hashlib.sha256(it[0].clip_id.encode()).hexdigest())
        for clip, row in sorted(chosen[: config.max_per_task], key=lambda it: it[0].clip_id):
            pcm, words, user = sources[(row["conversation_id"], row["perspective"])]
            write_clip(os.path.join(out, row["dir"]), clip, pcm, words, user)
            written.append(row)
    with open(os.path.join(out, "clips.jsonl"), "w", encoding="utf-8") as f:
        for row in written:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    with open(os.path.join(out, "split.json"), "w", encoding="utf-8") as f:
        json.dump(split, f, indent=2, sort_keys=True)
    return written


def export_fdbench_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="microturn export fdbench",
        description="Export evaluation clips of held-out conversations in Full-Duplex-Bench's layout (v1.0 pause "
        "handling, smooth turn-taking, user interruption; v1.5 user interruption and user backchannel). "
        "The dataset must have been written with --keep_audio.",
    )
    parser.add_argument("dataset", help="dataset directory written with --keep_audio")
    parser.add_argument("--out", required=True, help="output directory for the clip folders")
    parser.add_argument(
        "--split",
        default=None,
        help="split.json from `microturn split`; without it the split is computed with the options "
        "below and saved as OUT/split.json",
    )
    add_split_arguments(parser)
    defaults = ExportConfig()
    parser.add_argument(
        "--context_s",
        type=float,
        default=defaults.context_s,
        help=f"seconds of conversation before the event in each clip (default {defaults.context_s})",
    )
    parser.add_argument(
        "--response_s",
        type=float,
        default=defaults.response_s,
        help=f"seconds of silence after the user's last kept sound (default {defaults.response_s})",
    )
    parser.add_argument(
        "--pause_min_s",
        type=float,
        default=defaults.pause_min_s,
        help=f"seconds: shortest user pause for pause_handling (default {defaults.pause_min_s})",
    )
    parser.add_argument(
        "--max_per_task",
        type=int,
        default=defaults.max_per_task,
        help=f"clips per task at most (default {defaults.max_per_task})",
    )
    args = parser.parse_args(list(argv))
    try:
        split = (
            load_split(args.split)
            if args.split
            else split_dataset(
                args.dataset, eval_fraction=args.eval_fraction, seed=args.seed, speaker_scope=args.speaker_scope
            )
        )
        config = ExportConfig(
            context_s=args.context_s,
            response_s=args.response_s,
            pause_min_s=args.pause_min_s,
            max_per_task=args.max_per_task,
        )
        rows = export_fdbench(args.dataset, args.out, split=split, config=config)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["dir"].rsplit("/", 1)[0]] += 1
    print(
        f"{len(rows)} clips from {len(split['eval']['conversations'])} held-out conversations: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    print(f"wrote {args.out}")
    return 0
