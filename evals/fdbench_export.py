"""Export evaluation clips of held-out conversations in Full-Duplex-Bench's layout.

    microturn export fdbench demo-out/ds-audio --out fdbench --speaker_scope conversation --eval_fraction 0.4

Full-Duplex-Bench (github.com/DanielLin94144/Full-Duplex-Bench, v1.0 and v1.5) gives a model one folder per clip
and scores what the model says back. What this export follows, file by file (their dataset/README.md, "File
Descriptions" and "Dataset Structure"; evaluation/eval_backchannel.py; get_transcript/asr.py):

- `input.wav`: the user stream only, 16 kHz mono 16-bit ("Audio stream of user speech, intended as model input",
  their dataset README). Here it is the dataset's `input.flac` member (so the dataset must be written with
  `--keep_audio`), cut from the conversation; after the moment where the model should act it is digital silence.
- v1.0 task files, one JSON list with one object, times in seconds from the clip start:
  - `pause.json`: `[{"text": "[PAUSE]", "timestamp": [pause_start, pause_end]}]` (pause handling: the user pauses
    inside their turn and goes on; the model should not take the turn);
  - `turn_taking.json`: `[{"text": "[TURN-TAKING]", "timestamp": [user_turn_end, clip_end]}]` (smooth turn-taking;
    their evaluation reads `timestamp[0]` as the end of the user's turn and measures latency from it);
  - `interrupt.json`: `[{"context": str, "interrupt": str, "timestamp": [start, end]}]` (user interruption; their
    evaluation reads `context`, `interrupt` and `timestamp[1]`, the end of the interrupting utterance; asr.py
    --task user_interruption crops output.wav at `timestamp[1]`), with `context.wav` (the user's audio of the clip
    before the interruption) and `interrupt.wav` (the interrupting utterance) as their synthetic user interruption
    folders hold; here both are cut from input.wav, so context.wav + interrupt.wav == input.wav[:timestamp[1]];
  - backchannel (their ICC set, `icc_backchannel/{ID}/`): `input.wav` and `transcription.json` only. Their
    eval_backchannel.py reads only folders whose name is all digits (`spk.isdigit()`), so these folders are `0`,
    `1`, ... (clips.jsonl maps them to clip ids), and takes the ground truth from `icc_gt_distribution.json`
    (opened from its working directory), `{folder: [p_0, p_1, ...]}`: written here as `DIR/v1/icc_gt_distribution.json`
    (copy it into their evaluation/), each list built as they build the model's: 0.2 s bins over the clip
    (`int(duration / 0.2) + 1` of them), a backchannel [start, end] counting in bins int(start / 0.2) ..
    int(end / 0.2), plus 1e-10, normalised (they interpolate it to the prediction's length). A clip is one user turn
    (floor change to the user .. next floor change) in which the model side backchannels, from at most `context_s`
    before the first backchannel to the user's last sound of the turn; no silence is added after it;
  - `transcription.json`: `[{"speaker": 0, "item": [{"text": word, "timestamp": [start, end]}, ...]}]`, the words
    heard in input.wav (speaker 0 = the user; speaker 1 = the third parties mixed in, v1.5 tasks below only). This
    shape is the one the microturn issue gives; it could not be checked against a released file.
- v1.5 overlap tasks (user_interruption, user_backchannel, talking_to_other, background_speech): `input.wav`,
  `clean_input.wav` (the same audio with the overlapping utterance [start, end) replaced by silence, their paired
  control) and `metadata.json` with the fields their v1.5 evaluation reads:
  `{"context_text", "current_turn_text", "timestamps": [start, end]}` of the overlapping utterance. The third-party
  tasks need a conversation with more than two parties (the dataset's `others.flac`):
  - background_speech: a third party talks while the model side talks on through it (its unit starts before and
    ends after) and the user is silent; the others' stream is added to input.wav over that utterance only;
  - talking_to_other: the user says something that a third party answers (the next floor change goes to them)
    while the model side is silent from the utterance's start to the answer's start; the event is the user's
    utterance, with the others' stream added over it.
  The released v1.5 files could not be read here; that both tasks carry these three files and fields is taken from
  their v1.5 README (four overlap scenarios, paired clean input) and a third-party loader of the release (required
  files input.wav, clean_input.wav, metadata.json with `timestamps`, for all four subsets).

Folders: `DIR/v1/{backchannel,pause_handling,smooth_turn_taking,user_interruption}/{clip}/` and
`DIR/v1_5/{user_interruption,user_backchannel,talking_to_other,background_speech}/{clip}/` (the task names of
their `evaluate.py --task`), where `{clip}` is `{conversation}_{perspective}_{micro-turn:05d}` (digits for
backchannel, above). Nothing else is written inside the task folders (their scripts list every entry there as a
clip); `DIR/clips.jsonl` (one line per clip: where it comes from in the conversation, in seconds and samples, the
sample keys, `marks_sample` for backchannel) and `DIR/split.json` (the split used) sit beside them.

Which conversations: those of the evaluation side of a split (`--split`, else computed with the split options).
A dedicated evaluation set is exported whole with `--all`; a dataset of one conversation has nothing to hold out
from, so it is exported whole too, and the export says so (split.json then has an empty train side).

Events are found with the pipeline's own definitions (pipeline.labels, thresholds from manifest.json) on the
conversation's words, for each perspective: the perspective's user is the Full-Duplex-Bench user, its model side
is the model under test, every other speaker a third party. A conversation without words (an RTTM-only source)
gets its units from activity.npy instead: each stream's speech on the 200 ms grid, all third parties as one
speaker; its clips' texts are empty.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import soundfile as sf

from pipeline.labels import FLOOR_CHANGES, Event, Ipu, LabelConfig, detect_events, ipus
from pipeline.tools.inspect import load_sample
from pipeline.tools.split import conversations_from_index
from schemas.bundle import Segment, Word
from schemas.paths import confined_join, safe_name
from schemas.reader import join_windows
from schemas.shard import require_format
from schemas.tables import read_index_rows, read_manifest
from schemas.units import (
    SAMPLE_RATE_HZ,
    microturn_of_sample,
    microturn_start_s,
    microturn_start_sample,
    samples_to_seconds,
    seconds_to_samples,
)

logger = logging.getLogger(__name__)

ICC_GT_FILE = "icc_gt_distribution.json"
"""v1.0 backchannel ground truth, {clip folder: distribution}; their eval_backchannel.py opens it from its cwd."""
BACKCHANNEL_BIN_S = 0.2  # eval_backchannel.py `window_size`


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
    marks: tuple[tuple[int, int], ...] = ()  # v1 backchannel: the model side's backchannels [start, end)
    mix_others: bool = False  # v1.5 background_speech / talking_to_other: others' audio added in the event


OTHERS = "<others>"
"""Pseudo-speaker of the others' stream when units come from activity.npy (no words: RTTM-only sources)."""


def conversation_words(conv: Mapping) -> list[Word]:
    """A conversation's words in conversation seconds, from a joined conversation (schemas.reader.join_windows; one
    perspective)."""
    out = [
        Word(
            text=w["text"],
            start_s=w["start_s"],
            end_s=w["end_s"],
            speaker=w["speaker"],
            score=w.get("score"),
            source=w.get("source", "human"),
        )
        for w in conv["words.json"]
    ]
    return sorted(out, key=lambda w: (w.start_s, w.end_s, w.speaker))


def user_stream(conv: Mapping, member: str = "input.flac") -> np.ndarray:
    """One stream's 16 kHz audio over the whole conversation (the user's by default; `others.flac` for the
    others' mix), from a joined conversation (schemas.reader.join_windows)."""
    meta = conv["meta.json"]
    if member not in conv:
        raise ValueError(
            f"sample {meta['key']} has no {member} member: export fdbench needs a dataset written with --keep_audio"
        )
    return conv[member][: meta["conversation_samples"]]


def activity_segments(conv: Mapping, *, user: str, model: str) -> list[Segment]:
    """Each stream's speech as segments on the 200 ms grid, from the activity.npy of a joined conversation
    (schemas.reader.join_windows; a micro-turn with any speech is speech); the others' stream is one pseudo-speaker
    OTHERS. For conversations without words."""
    activity = conv["activity.npy"]
    total = conv["meta.json"]["conversation_samples"]
    out = []
    for col, speaker in enumerate((user, OTHERS, model)):  # schemas.sample.STREAMS order
        on = np.concatenate([[0], (activity[:, col] > 0).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(on))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            end = min(microturn_start_sample(int(b)), total)
            out.append(
                Segment(
                    start_s=microturn_start_s(int(a)),
                    end_s=samples_to_seconds(end),
                    speaker=speaker,
                )
            )
    return out


def backchannel_distribution(marks_s: Sequence[tuple[float, float]], duration_s: float) -> list[float]:
    """The ground-truth backchannel distribution of one v1.0 backchannel clip, built as their
    eval_backchannel.py builds the model's: 0.2 s bins over the clip, each backchannel [start, end] counting in
    bins int(start / 0.2) .. int(end / 0.2), plus 1e-10, normalised to sum 1."""
    counts = np.zeros(int(duration_s / BACKCHANNEL_BIN_S) + 1)
    for a, b in marks_s:
        counts[int(a / BACKCHANNEL_BIN_S) : int(b / BACKCHANNEL_BIN_S) + 1] += 1
    counts += 1e-10
    return [float(x) for x in counts / counts.sum()]


def _text(words: Sequence[Word], user: str | None, a: int, b: int) -> str:
    """The words of `user` (of everyone when None) that start in [a, b) samples."""
    return " ".join(w.text for w in words if user in (None, w.speaker) and a <= seconds_to_samples(w.start_s) < b)


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
        if e.kind in FLOOR_CHANGES and e.start <= at:
            holder = e.by
    return holder


@dataclass(frozen=True, slots=True, kw_only=True)
class _Perspective:
    """What the clip finders of every task read: one perspective's words, units and events, and the clip bounds
    (samples). `user` and `model` are speaker ids; every other speaker is a third party."""

    words: Sequence[Word]
    user: str
    model: str
    units: list[Ipu]
    events: list[Event]
    num_samples: int
    context: int  # samples of context before a clip's anchor
    response: int  # samples of room for the response after the audio
    clip_prefix: str

    @property
    def user_units(self) -> list[Ipu]:
        return [u for u in self.units if u.speaker == self.user]

    @property
    def model_units(self) -> list[Ipu]:
        return [u for u in self.units if u.speaker == self.model]

    def clip(
        self,
        version: str,
        task: str,
        anchor: int,
        audio_end: int,
        ev: tuple[int, int],
        end: int | None = None,
        *,
        start: int | None = None,
        marks: tuple[tuple[int, int], ...] = (),
        mix_others: bool = False,
    ) -> Clip:
        """A clip anchored at sample `anchor` (its id is the anchor's micro-turn) with the event `ev` = [a, b)."""
        start = _clip_start(self.words, self.user, anchor, self.context) if start is None else start
        end = audio_end + self.response if end is None else end
        mt = microturn_of_sample(anchor)
        return Clip(
            version=version,
            task=task,
            clip_id=f"{self.clip_prefix}_{mt:05d}",
            start=start,
            end=min(end, self.num_samples + self.response),
            audio_end=min(audio_end, self.num_samples),
            event_start=ev[0],
            event_end=ev[1],
            context_text=_text(self.words, self.user, start, ev[0]),
            event_text=_text(self.words, self.user if not mix_others else None, ev[0], ev[1]),
            marks=marks,
            mix_others=mix_others,
        )


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
    segments: Sequence[Segment] | None = None,
) -> list[Clip]:
    """Every clip of every task for one perspective (user and model are speaker ids of the conversation; every
    other speaker is a third party). Units come from `words`, or from `segments` where there are no words."""
    units = ipus(list(speakers), words=words or None, segments=segments, config=labels)
    p = _Perspective(
        words=words,
        user=user,
        model=model,
        units=units,
        events=detect_events(units, labels),
        num_samples=num_samples,
        context=seconds_to_samples(config.context_s),
        response=seconds_to_samples(config.response_s),
        clip_prefix=clip_prefix,
    )
    return [
        *_turn_taking_clips(p),
        *_backchannel_clips(p),
        *_third_party_clips(p),
        *_pause_clips(p, pause_min=seconds_to_samples(config.pause_min_s)),
    ]


def _turn_taking_clips(p: _Perspective) -> list[Clip]:
    """v1 smooth_turn_taking at each yield of the model side to the user; v1 and v1.5 user_interruption and v1.5
    user_backchannel at each of the user's interruptions and backchannels of the model side."""
    clips = []
    user_units = p.user_units
    for e in p.events:
        if e.kind == "yield" and e.by == p.model and e.of == p.user:
            turn_end = e.start - e.offset
            clips.append(p.clip("v1", "smooth_turn_taking", turn_end, turn_end, (turn_end, turn_end + p.response)))
        elif e.kind in ("interruption", "backchannel") and e.by == p.user and e.of == p.model:
            u = next(u for u in user_units if u.start == e.start)
            versions = (
                [("v1", "user_interruption"), ("v1_5", "user_interruption")]
                if e.kind == "interruption"
                else [("v1_5", "user_backchannel")]
            )
            for version, task in versions:
                clips.append(p.clip(version, task, u.start, u.end, (u.start, u.end)))
    return clips


def _backchannel_clips(p: _Perspective) -> list[Clip]:
    """v1.0 backchannel (ICC): one clip per user turn in which the model side backchannels; the turn runs from the
    floor change to the user to the next floor change (clip starts at most context_s before the first
    backchannel); input.wav ends with the user's last sound of the turn, as ICC clips do."""
    user_units, model_units = p.user_units, p.model_units
    changes = [(0, p.units[0].speaker)] if p.units else []
    changes += [(e.start, e.by) for e in p.events if e.kind in FLOOR_CHANGES]
    turns: dict[int, list[Ipu]] = defaultdict(list)
    for e in p.events:
        if e.kind == "backchannel" and e.by == p.model and e.of == p.user:
            turn_start = max((t for t, by in changes if t <= e.start and by == p.user), default=0)
            turns[turn_start].append(next(u for u in model_units if u.start == e.start))
    clips = []
    for turn_start, bcs in sorted(turns.items()):
        turn_end = min([t for t, _ in changes if t > turn_start] + [p.num_samples])
        audio_end = max(u.end for u in user_units if turn_start <= u.start < turn_end)
        start = max(turn_start, _clip_start(p.words, p.user, bcs[0].start, p.context))
        marks = tuple((u.start, u.end) for u in bcs)
        ev = (marks[0][0], marks[-1][1])
        clips.append(p.clip("v1", "backchannel", bcs[0].start, audio_end, ev, end=audio_end, start=start, marks=marks))
    return clips


def _busy(units: Sequence[Ipu], a: int, b: int) -> bool:
    """Whether any of `units` overlaps [a, b)."""
    return any(u.start < b and u.end > a for u in units)


def _third_party_clips(p: _Perspective) -> list[Clip]:
    """v1.5 tasks with a third party, whose audio (the others' stream) is mixed into input.wav over the event and
    silenced in clean_input.wav.

    background_speech: a third party talks while the model side talks on through it (starts before, ends after)
    and the user is silent. talking_to_other: the user says something that a third party, not the model side,
    answers (the next floor change after it goes to that party) while the model side is silent from the
    utterance's start to the answer's start; the event is the user's utterance.
    """
    user_units, model_units = p.user_units, p.model_units
    clips = []
    for o in (u for u in p.units if u.speaker not in (p.user, p.model)):
        if any(m.start < o.start and m.end > o.end for m in model_units) and not _busy(user_units, o.start, o.end):
            clips.append(p.clip("v1_5", "background_speech", o.start, o.end, (o.start, o.end), mix_others=True))
    for e in p.events:
        if e.kind in FLOOR_CHANGES and e.of == p.user and e.by not in (p.user, p.model):
            said = [u for u in user_units if u.start < e.start]
            if said and not _busy(model_units, said[-1].start, max(said[-1].end, e.start)):
                u = said[-1]
                clips.append(p.clip("v1_5", "talking_to_other", u.start, u.end, (u.start, u.end), mix_others=True))
    return clips


def _pause_clips(p: _Perspective, *, pause_min: int) -> list[Clip]:
    """v1 pause_handling: a pause of at least `pause_min` samples between two of the user's units, inside the
    user's turn (they hold the floor on both sides) and with nobody speaking in it."""
    clips = []
    others = [u for u in p.units if u.speaker != p.user]
    for u1, u2 in itertools.pairwise(p.user_units):
        if u2.start - u1.end < pause_min:
            continue
        if any(o.start < u2.start and o.end > u1.end for o in others):
            continue  # someone speaks in the pause
        if _floor_holder(p.units, p.events, u1.end) != p.user or _floor_holder(p.units, p.events, u2.start) != p.user:
            continue  # the user does not hold the floor: not a pause inside their turn
        clips.append(p.clip("v1", "pause_handling", u1.end, u2.end, (u1.end, u2.start), end=u2.end))
    return clips


def cut_audio(user_pcm: np.ndarray, clip: Clip, others_pcm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input, clean_input) of a clip: the user stream in [start, audio_end), silence up to end, and for the
    tasks that mix others (clip.mix_others) the others' stream added in [event_start, event_end); clean_input
    silences [event_start, event_end)."""
    out = np.zeros(clip.end - clip.start, dtype=np.float32)
    kept = user_pcm[clip.start : clip.audio_end]
    out[: len(kept)] = kept
    clean = out.copy()
    a, b = max(0, clip.event_start - clip.start), max(0, clip.event_end - clip.start)
    if clip.mix_others:
        if others_pcm is None:
            raise ValueError(f"clip {clip.clip_id} ({clip.task}) needs the others' stream (others.flac)")
        extra = others_pcm[clip.event_start : min(clip.event_end, clip.audio_end)]
        out[a : a + len(extra)] = np.clip(out[a : a + len(extra)] + extra, -1.0, 1.0)
    clean[a:b] = 0.0
    return out, clean


def _rel(x: int, clip: Clip) -> float:
    return round(samples_to_seconds(x - clip.start), 4)


def write_clip(
    folder: str,
    clip: Clip,
    user_pcm: np.ndarray,
    words: Sequence[Word],
    user: str,
    others_pcm: np.ndarray | None = None,
    model: str | None = None,
) -> None:
    os.makedirs(folder, exist_ok=True)
    audio, clean = cut_audio(user_pcm, clip, others_pcm)
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
        a, b = clip.event_start - clip.start, clip.event_end - clip.start
        sf.write(os.path.join(folder, "context.wav"), audio[:a], SAMPLE_RATE_HZ, subtype="PCM_16")
        sf.write(os.path.join(folder, "interrupt.wav"), audio[a:b], SAMPLE_RATE_HZ, subtype="PCM_16")

    def heard(speakers: set[str], a: int, b: int) -> list[dict]:
        return [
            {
                "text": w.text,
                "timestamp": [_rel(seconds_to_samples(w.start_s), clip), _rel(seconds_to_samples(w.end_s), clip)],
            }
            for w in words
            if w.speaker in speakers and a <= seconds_to_samples(w.start_s) and seconds_to_samples(w.end_s) <= b
        ]

    files["transcription.json"] = [{"speaker": 0, "item": heard({user}, clip.start, clip.audio_end)}]
    if clip.mix_others:  # the third parties heard in input.wav
        third = {w.speaker for w in words} - {user, model}
        files["transcription.json"].append(  # type: ignore[attr-defined]
            {"speaker": 1, "item": heard(third, clip.event_start, min(clip.event_end, clip.audio_end))}
        )
    for name, obj in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


_Source = tuple[np.ndarray, np.ndarray | None, list[Word], str, str]
"""One perspective's user audio, others' audio (None: no others), words, user and model speaker ids."""


def _perspective_clips(
    dataset: str, rows: Sequence[Mapping], conv_id: str, persp: str, *, labels: LabelConfig, config: ExportConfig
) -> tuple[list[Clip], _Source]:
    """The clips of one perspective of a conversation, from its windows' index `rows` (those that mix in the others'
    stream only where there is one), and what writing them needs."""
    conv = join_windows([load_sample(dataset, r["key"], persp) for r in rows])
    meta = conv["meta.json"]
    words = conversation_words(conv)
    spk = meta["speakers"]
    user, model = spk["input"], spk["output"]
    segments, speakers = None, [model, user, *spk["others"]]
    if not words:  # e.g. RTTM-only sources: speech from activity.npy on the 200 ms grid, no texts
        logger.info("%s has no words: events from activity.npy (200 ms grid)", conv_id)
        segments, speakers = activity_segments(conv, user=user, model=model), [model, user, OTHERS]
    pcm = user_stream(conv)
    others_pcm = user_stream(conv, "others.flac") if spk["others"] else None
    clips = find_clips(
        words,
        user=user,
        model=model,
        speakers=speakers,
        num_samples=len(pcm),
        labels=labels,
        config=config,
        clip_prefix=f"{safe_name(meta['conversation_key'])}_{safe_name(persp)}",
        segments=segments,
    )
    if others_pcm is None:
        clips = [c for c in clips if not c.mix_others]
    return clips, (pcm, others_pcm, words, user, model)


def _clip_row(c: Clip, rows: Sequence[Mapping], *, conv_id: str, persp: str, user: str, model: str) -> dict:
    """The clips.jsonl row of clip `c`: where it is, where it came from (the keys of the windows it overlaps,
    among `rows`), its bounds in seconds and in samples."""
    return {
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
            if microturn_start_sample(r["start_microturn"]) < c.end
            and microturn_start_sample(r["start_microturn"] + r["num_microturns"]) > c.start
        ],
        "start_s": samples_to_seconds(c.start),
        "end_s": samples_to_seconds(c.end),
        "audio_end_s": samples_to_seconds(c.audio_end),
        **{
            f"{k}_sample": v
            for k, v in asdict(c).items()
            if k in ("start", "end", "audio_end", "event_start", "event_end")
        },
        **({"marks_sample": [list(m) for m in c.marks]} if c.marks else {}),
    }


def export_fdbench(dataset: str, out: str, *, split: Mapping, config: ExportConfig = ExportConfig()) -> list[dict]:
    """Write the clips of the split's eval conversations under `out`; return the clips.jsonl rows."""
    manifest = read_manifest(dataset)
    require_format(manifest, dataset)
    if not manifest["config"].get("windows", {}).get("keep_audio"):
        raise ValueError(
            f"{dataset} was written without --keep_audio: Full-Duplex-Bench's input.wav is the user's "
            "audio, which only such datasets hold (input.flac). Rerun `microturn run --input BUNDLES "
            "--output DIR --keep_audio` and export from DIR"
        )
    labels = LabelConfig.from_dict(manifest["config"]["labels"])
    held_out = set(split["eval"]["conversations"])
    per_persp: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in read_index_rows(dataset):
        if r["conversation_id"] in held_out:
            per_persp[(r["conversation_id"], r["perspective"])].append(r)
    if not per_persp:
        raise ValueError(f"none of the split's eval conversations {sorted(held_out)[:5]} is in {dataset}")
    candidates: dict[tuple[str, str], list[tuple[Clip, dict]]] = defaultdict(list)
    sources: dict[tuple[str, str], _Source] = {}
    for (conv_id, persp), rows in sorted(per_persp.items()):
        clips, source = _perspective_clips(dataset, rows, conv_id, persp, labels=labels, config=config)
        sources[(conv_id, persp)] = source
        user, model = source[3], source[4]
        for c in clips:
            taken = {it[0].clip_id for it in candidates[(c.version, c.task)]}
            if c.clip_id in taken:  # two events of one task in one micro-turn
                c = replace(
                    c, clip_id=next(f"{c.clip_id}_{i}" for i in range(1, 1000) if f"{c.clip_id}_{i}" not in taken)
                )
            row = _clip_row(c, rows, conv_id=conv_id, persp=persp, user=user, model=model)
            candidates[(c.version, c.task)].append((c, row))
    os.makedirs(out, exist_ok=True)
    written = []
    icc_gt: dict[str, list[float]] = {}
    for (version, task), items in sorted(candidates.items()):
        chosen = sorted(items, key=lambda it: hashlib.sha256(it[0].clip_id.encode()).hexdigest())
        for i, (clip, row) in enumerate(sorted(chosen[: config.max_per_task], key=lambda it: it[0].clip_id)):
            if (version, task) == ("v1", "backchannel"):  # eval_backchannel.py reads only folders named by digits
                row["dir"] = f"v1/backchannel/{i}"
                icc_gt[str(i)] = backchannel_distribution(
                    [(_rel(a, clip), _rel(b, clip)) for a, b in clip.marks], samples_to_seconds(clip.end - clip.start)
                )
            pcm, others_pcm, words, user, model = sources[(row["conversation_id"], row["perspective"])]
            write_clip(confined_join(out, row["dir"]), clip, pcm, words, user, others_pcm, model)
            written.append(row)
    if icc_gt:
        with open(os.path.join(out, "v1", ICC_GT_FILE), "w", encoding="utf-8") as f:
            json.dump(icc_gt, f)
    with open(os.path.join(out, "clips.jsonl"), "w", encoding="utf-8") as f:
        for row in written:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    with open(os.path.join(out, "split.json"), "w", encoding="utf-8") as f:
        json.dump(split, f, indent=2, sort_keys=True)
    return written


def whole_dataset_split(dataset: str) -> dict:
    """A split.json object with every conversation of `dataset` on the eval side and none on train (`--all`)."""
    convs = conversations_from_index(read_index_rows(dataset))
    if not convs:
        raise ValueError(f"{dataset}: the index has no samples")
    return {
        "config": {"dataset": dataset, "all": True},
        "train": {"conversations": [], "speakers": [], "keys": [], "hours": 0.0},
        "eval": {
            "conversations": [c.conversation_id for c in convs],
            "speakers": sorted({s for c in convs for s in c.speakers}),
            "keys": sorted(k for c in convs for k in c.keys),
            "hours": round(sum(c.duration_s for c in convs) / 3600.0, 6),
        },
    }
