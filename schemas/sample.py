"""The micro-turn sample: one window of one conversation, stored once, seen from each perspective (DESIGN.md §3-§5).

    python -c "from schemas.sample import WINDOW_MEMBERS; print(list(WINDOW_MEMBERS))"

Stored (format 3): `WindowSample` (meta `WindowMeta`, words `WindowWord`, spans `WindowAnnotation`; members at the
end of this file): every speaker's streams once, labels per perspective, members zstd-compressed. pipeline/windows.py
fills it in and writes `to_members()`; schemas/validate.py checks shards with `from_members`; schemas/reader.py
decodes a window once and gives each perspective with `perspective_members`.

Seen (what readers and the trainer get, and format 2 stored): the record `MicroTurnSample` (meta `SampleMeta`,
words `SampleWord`, spans `SampleAnnotation`), one window from one perspective (`WindowSample.view`). A sample holds
W micro-turns (default 150 = 30 s). Its members, by name (`to_members` encodes them plainly, as format 2 did):

| member            | dtype   | shape          | meaning                                                              |
|-------------------|---------|----------------|----------------------------------------------------------------------|
| meta.json         | JSON    |                | SampleMeta                                                           |
| input.dmel.npy    | uint8   | (W, 16, 80)    | user stream dMel codes 0..15, 16 frames of 12.5 ms per micro-turn    |
| others.dmel.npy   | uint8   | (W, 16, 80)    | mix of the remaining parties (only when more than two people talk)   |
| output.dmel.npy   | uint8   | (W, 16, 80)    | model stream dMel codes                                              |
| activity.npy      | float32 | (W, 3)         | speech fraction of each 200 ms: columns (input, others, output)      |
| labels.npy        | uint8   | (W,)           | bit mask of LABEL_BITS                                               |
| floor.npy         | int16   | (W,)           | micro-turns until the next floor change (0 at its onset), -1: none   |
| mask.npy          | uint8   | (W,)           | 1 = a micro-turn of the conversation, 0 = padding after its end      |
| words.json        | JSON    |                | list of SampleWord objects                                           |
| annotations.json  | JSON    |                | list of SampleAnnotation objects (labelled spans, e.g. refusals)     |
| targets.json      | JSON    |                | list of SampleTarget objects (schemas/targets.py; only when the      |
|                   |         |                | conversation has proactive targets)                                  |
| events.json       | JSON    |                | list of schemas.events.SampleEvent (only when the bundle has events) |
| frames.mjpeg      | JPEG    |                | the window's video frames back to back (only with video)             |
| frames.index.npy  | int64   | (W, 2)         | byte offset and length of each micro-turn's JPEG; 0 length = none   |
| input.flac etc.   | FLAC    | (W * 3200,)    | optional raw 16 kHz audio per stream (``--keep_audio``)              |

The last micro-turn of a conversation is usually partial: its valid sample count is ``meta.last_valid_samples``
(for the window that holds it); its mask is 1 and the padded audio is digital silence.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN
from schemas.events import SampleEvent, event_problems
from schemas.frames import encode_frames
from schemas.shard import (
    COMPRESSED_SUFFIX,
    FormatVersionError,
    compress,
    decode_array,
    decode_flac,
    decode_json,
    decompress,
    encode_array,
    encode_flac,
    encode_json,
    pack_codes,
    record_fields,
    unpack_codes,
    version_problem,
)
from schemas.targets import SampleTarget
from schemas.units import SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN

STREAMS = ("input", "others", "output")
"""Stream names. `input` is the user, `others` the rest of the non-model parties, `output` the model."""

LABEL_BITS = {
    "input_speech": 1,  # the user side (user or others) speaks in this micro-turn
    "output_speech": 2,  # the model speaks in this micro-turn
    "backchannel": 4,  # onset of a user backchannel during the model's turn
    "interruption": 8,  # onset of a user interruption: user starts over the model, which stops (late or not: meta.json)
    "yield_to_input": 16,  # onset of a turn the user takes after the model yielded (model silent)
    "yield_to_output": 32,  # onset of a turn the model takes after the user yielded (turn-taking cue)
    "output_backchannel": 64,  # onset of a model backchannel during the user's turn
    "output_interruption": 128,  # onset of a model interruption of the user
}
"""Interaction labels (bit -> name). Silence = neither speech bit, overlap = both speech bits.
Definitions and thresholds: pipeline/labels.py; the thresholds used are written to manifest.json."""

EVENT_LABELS = (
    "backchannel",
    "interruption",
    "yield_to_input",
    "yield_to_output",
    "output_backchannel",
    "output_interruption",
)

WINDOW_ARRAYS = {
    "activity.npy": (np.float32, (3,)),
    "labels.npy": (np.uint8, ()),
    "floor.npy": (np.int16, ()),
    "mask.npy": (np.uint8, ()),
    **{f"{stream}.dmel.npy": (np.uint8, (FRAMES_PER_MICROTURN, DMEL_CHANNELS)) for stream in STREAMS},
    "frames.index.npy": (np.int64, (2,)),
}
"""Array members: dtype and shape after the leading W micro-turns."""

MEMBERS: dict[str, Callable[[bytes], Any]] = {
    "meta.json": decode_json,
    "words.json": decode_json,
    "annotations.json": decode_json,
    "targets.json": decode_json,
    "events.json": decode_json,
    **{name: decode_array for name in WINDOW_ARRAYS},
    "frames.mjpeg": bytes,  # decoded together with frames.index.npy (schemas.frames.decode_frames)
    **{f"{stream}.flac": decode_flac for stream in STREAMS},
}
"""Every member a sample may hold -> its decoder (explicit: never pickle)."""

REQUIRED_MEMBERS = (
    "meta.json",
    "words.json",
    "annotations.json",
    "input.dmel.npy",
    "output.dmel.npy",
    "activity.npy",
    "labels.npy",
    "floor.npy",
    "mask.npy",
)


def decode_member(name: str, data: bytes) -> Any:
    """Decode one member by its name (the part after the key): arrays, JSON objects, float32 PCM or bytes.

    Raises:
        ValueError: `name` is not a member of the format (see MEMBERS).
    """
    decoder = MEMBERS.get(name)
    if decoder is None:
        raise ValueError(f"no decoder for member {name!r}; known members: {', '.join(MEMBERS)}")
    return decoder(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleSpeakers:
    """meta.speakers: original speaker ids of each stream."""

    input: str | None  # the user (the most talkative other party)
    others: tuple[str, ...]  # mixed into the `others` stream
    output: str  # the speaker playing the model

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "others": list(self.others), "output": self.output}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleSpeakers:
        return cls(**record_fields(cls, obj, "meta.speakers", others=tuple(obj.get("others", ()))))


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleVideo:
    """meta.video: frames stored in the window and the measured audio-video offset."""

    frames: int
    audio_video_offset_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "audio_video_offset_s": self.audio_video_offset_s}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleVideo:
        return cls(**record_fields(cls, obj, "meta.video"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleInterruption:
    """One entry of meta.interruptions: an interruption onset between the input and the output side."""

    microturn: int  # window micro-turn of the onset (its label bit is set there in labels.npy)
    label: str  # 'interruption' (the user interrupts the model) | 'output_interruption' (the model the user)
    stop_latency_s: float  # seconds the interrupted side took to stop (filter or weight slow yields with it)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleInterruption:
        return cls(**record_fields(cls, obj, "meta.interruptions"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleMeta:
    """meta.json."""

    format_version: int  # schemas.shard.FORMAT_VERSION
    key: str  # sample key, '{conversation_key}_{perspective}_{window:05d}'
    conversation_id: str  # the bundle id as given
    conversation_key: str  # key-safe id (schemas.bundle.sanitise_id)
    perspective: str  # key-safe id of the speaker playing the model
    window: int  # window index within the conversation and perspective
    start_microturn: int  # conversation micro-turn of the window's first micro-turn
    num_microturns: int  # micro-turns of the conversation in this window (mask sum)
    window_microturns: int  # W, the padded window length
    last_valid_samples: int  # valid 16 kHz samples of the window's last real micro-turn (1..3200)
    conversation_samples: int  # the conversation's length in 16 kHz samples
    speakers: SampleSpeakers
    streams: tuple[str, ...]  # which dMel members the sample has, sorted
    language: str
    source: str
    licence: str
    split: str
    word_sources: Mapping[str, int]  # {source: count} over the window's words, sorted by source
    tags: Mapping[str, str]  # the bundle's tags (e.g. category, layout, is_refusal for synthesised refusals)
    interruptions: tuple[SampleInterruption, ...]  # the window's interruption onsets with their stop latencies
    video: SampleVideo | None  # None without video

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(
            speakers=self.speakers.to_dict(),
            streams=list(self.streams),
            word_sources=dict(self.word_sources),
            tags=dict(self.tags),
            interruptions=[x.to_dict() for x in self.interruptions],
            video=None if self.video is None else self.video.to_dict(),
        )
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleMeta:
        video = obj.get("video")
        return cls(
            **record_fields(
                cls,
                obj,
                "meta.json",
                speakers=SampleSpeakers.from_dict(obj.get("speakers") or {}),
                streams=tuple(obj.get("streams", ())),
                interruptions=tuple(SampleInterruption.from_dict(x) for x in obj.get("interruptions", ())),
                video=None if video is None else SampleVideo.from_dict(video),
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleWord:
    """One entry of words.json."""

    text: str
    stream: str  # 'input' | 'others' | 'output'
    speaker: str  # original speaker id
    start_s: float  # seconds from the window start (< 0 for a word that began before the window)
    end_s: float  # seconds from the window start
    microturn: int  # window micro-turn the word is placed in (input/others: contains its end; output: its start)
    source: str  # 'human' | 'tts' | 'aligned' | 'asr'
    score: float | None  # alignment confidence

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleWord:
        return cls(**record_fields(cls, obj, "words.json"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleAnnotation:
    """One entry of annotations.json: a labelled span (e.g. a refusal) clipped to the window."""

    label: str  # e.g. 'refusal'
    stream: str  # 'input' | 'others' | 'output'
    speaker: str  # original speaker id
    start_microturn: int  # first window micro-turn the span touches (clipped to the window)
    end_microturn: int  # one past the last window micro-turn it touches (clipped)
    start_s: float  # seconds from the window start (may be < 0)
    end_s: float  # seconds from the window start

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SampleAnnotation:
        return cls(**record_fields(cls, obj, "annotations.json"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MicroTurnSample:
    """One sample (see the module docstring for the members). Arrays have W = meta.window_microturns rows."""

    meta: SampleMeta
    input_dmel: np.ndarray  # (W, 16, 80) uint8 codes 0..15
    output_dmel: np.ndarray  # (W, 16, 80) uint8
    others_dmel: np.ndarray | None = None  # (W, 16, 80) uint8, only when more than two people talk
    activity: np.ndarray  # (W, 3) float32 speech fraction per micro-turn: (input, others, output)
    labels: np.ndarray  # (W,) uint8 bit mask of LABEL_BITS
    floor: np.ndarray  # (W,) int16 micro-turns until the next floor change, -1: none
    mask: np.ndarray  # (W,) uint8 1 = real micro-turn, 0 = padding
    words: tuple[SampleWord, ...] = ()
    annotations: tuple[SampleAnnotation, ...] = ()
    frames: tuple[bytes | None, ...] | None = None  # (W,) one JPEG per micro-turn (None: no frame); None: no video
    audio: Mapping[str, np.ndarray] | None = None  # stream -> (W * 3200,) float32 16 kHz PCM; None: not kept
    targets: tuple[SampleTarget, ...] | None = None  # proactive targets; None: the conversation has none
    events: tuple[SampleEvent, ...] | None = None  # events.json (schemas/events.py); None: the bundle has none

    def arrays(self) -> dict[str, np.ndarray]:
        """The array members by member name, in the order they are written."""
        out = {
            "activity.npy": self.activity,
            "labels.npy": self.labels,
            "floor.npy": self.floor,
            "mask.npy": self.mask,
            "input.dmel.npy": self.input_dmel,
            "output.dmel.npy": self.output_dmel,
        }
        if self.others_dmel is not None:
            out["others.dmel.npy"] = self.others_dmel
        return out

    def to_members(self) -> dict[str, bytes]:
        """The shard members ({member name: bytes}); equal records give equal bytes."""
        members = {
            "meta.json": encode_json(self.meta.to_dict()),
            "words.json": encode_json([w.to_dict() for w in self.words]),
            "annotations.json": encode_json([a.to_dict() for a in self.annotations]),
            **{name: encode_array(array) for name, array in self.arrays().items()},
        }
        if self.frames is not None:
            members["frames.mjpeg"], index = encode_frames(list(self.frames))
            members["frames.index.npy"] = encode_array(index)
        for stream, pcm in (self.audio or {}).items():
            members[f"{stream}.flac"] = encode_flac(pcm, SAMPLE_RATE_HZ)
        if self.targets is not None:
            members["targets.json"] = encode_json([t.to_dict() for t in self.targets])
        if self.events is not None:
            members["events.json"] = encode_json([e.to_dict() for e in self.events])
        return members

    @classmethod
    def from_members(cls, members: Mapping[str, bytes]) -> MicroTurnSample:
        """Decode and check a sample's members (names without the key).

        Raises:
            ValueError: naming every problem found: a missing, unknown or undecodable member, a wrong dtype or
                shape, meta.streams disagreeing with the dMel members, a frames member without the other.
        """
        problems = [f"missing member {name}" for name in REQUIRED_MEMBERS if name not in members]
        problems += [f"unknown member {name}" for name in members if name not in MEMBERS]
        decoded: dict[str, Any] = {}
        for name in members:
            if name in MEMBERS:
                try:
                    decoded[name] = decode_member(name, members[name])
                except ValueError as e:  # json.JSONDecodeError is a ValueError
                    problems.append(f"{name} does not decode: {e}")
        meta = words = annotations = None
        try:
            if "meta.json" in decoded:
                meta = SampleMeta.from_dict(decoded["meta.json"])
            if "words.json" in decoded:
                words = tuple(SampleWord.from_dict(w) for w in decoded["words.json"])
            if "annotations.json" in decoded:
                annotations = tuple(SampleAnnotation.from_dict(a) for a in decoded["annotations.json"])
        except (ValueError, TypeError, AttributeError) as e:  # a field of the wrong JSON type
            problems.append(str(e))
        targets, target_problems = _targets_of(decoded, meta)
        problems += target_problems
        events = None
        if "events.json" in decoded:
            try:
                events = tuple(SampleEvent.from_dict(e) for e in decoded["events.json"])
            except (ValueError, TypeError, AttributeError) as e:
                problems.append(str(e))
            if events is not None and meta is not None:
                problems += [f"events.json: {p}" for p in event_problems(list(events), meta.num_microturns)]
        if meta is not None:
            problems += _array_problems(meta, decoded)
        if ("frames.mjpeg" in members) != ("frames.index.npy" in members):
            problems.append("frames.mjpeg and frames.index.npy come together")
        if problems or meta is None or words is None or annotations is None:
            raise ValueError("; ".join(problems))
        frames = None
        if "frames.index.npy" in decoded:
            mjpeg = decoded["frames.mjpeg"]
            frames = tuple(mjpeg[o : o + n] if n else None for o, n in decoded["frames.index.npy"].tolist())
        audio = {s: decoded[f"{s}.flac"] for s in STREAMS if f"{s}.flac" in decoded} or None
        return cls(
            meta=meta,
            input_dmel=decoded["input.dmel.npy"],
            output_dmel=decoded["output.dmel.npy"],
            others_dmel=decoded.get("others.dmel.npy"),
            activity=decoded["activity.npy"],
            labels=decoded["labels.npy"],
            floor=decoded["floor.npy"],
            mask=decoded["mask.npy"],
            words=words,
            annotations=annotations,
            frames=frames,
            audio=audio,
            targets=targets,
            events=events,
        )


def _targets_of(
    decoded: Mapping[str, Any], meta: SampleMeta | None
) -> tuple[tuple[SampleTarget, ...] | None, list[str]]:
    """targets.json decoded into records, and its problems (fields, micro-turns outside the window's real ones)."""
    if "targets.json" not in decoded:
        return None, []
    try:
        targets = tuple(SampleTarget.from_dict(t) for t in decoded["targets.json"])
    except (ValueError, TypeError) as e:
        return None, [str(e)]
    n = meta.num_microturns if meta is not None else 0
    return targets, [f"targets.json: {p}" for t in targets for p in t.problems(n)] if meta is not None else []


def _array_problems(meta: SampleMeta, decoded: Mapping[str, Any]) -> list[str]:
    """Dtype and shape problems of the decoded arrays and audio against meta.window_microturns."""
    w = meta.window_microturns
    problems = []
    for name, (dtype, tail) in WINDOW_ARRAYS.items():
        array = decoded.get(name)
        if array is not None and (array.dtype != dtype or array.shape != (w, *tail)):
            problems.append(
                f"{name}: dtype {array.dtype} shape {array.shape}, expected {np.dtype(dtype)} "
                f"{(w, *tail)} (W = meta.window_microturns)"
            )
    for stream in STREAMS:
        pcm = decoded.get(f"{stream}.flac")
        if pcm is not None and pcm.shape != (w * SAMPLES_PER_MICROTURN,):
            problems.append(f"{stream}.flac: {pcm.shape} samples, expected ({w * SAMPLES_PER_MICROTURN},)")
    index = decoded.get("frames.index.npy")
    if index is not None and index.shape == (w, 2):
        if (index < 0).any() or (index.sum(axis=1) > len(decoded.get("frames.mjpeg", b""))).any():
            problems.append("frames.index.npy: offsets outside frames.mjpeg")
    present = tuple(s for s in sorted(STREAMS) if f"{s}.dmel.npy" in decoded)
    if tuple(meta.streams) != present:
        problems.append(f"meta.streams is {list(meta.streams)} but the dMel members are {list(present)}")
    return problems


# ------------------------------------------------------------------------------------------------ format 3: windows

WINDOW_MEMBERS: dict[str, Callable[[bytes], Any]] = {
    "meta.json": decode_json,
    "words.json": decode_json,
    "annotations.json": decode_json,
    "targets.json": decode_json,
    "events.json": decode_json,
    "dmel.npy": decode_array,
    "others.dmel.npy": decode_array,
    "activity.npy": decode_array,
    "others.activity.npy": decode_array,
    "labels.npy": decode_array,
    "floor.npy": decode_array,
    "frames.index.npy": decode_array,
}
"""The compressed members of a stored window (each `{key}.{name}.zst` in the tar) -> decoder after decompression.
Besides these: `frames.mjpeg` (JPEGs, stored as they are) and `s{i}.flac` / `o{r}.flac` (16-bit FLAC of speaker
row i / others mix row r, only with --keep_audio)."""

WINDOW_REQUIRED = ("meta.json", "words.json", "dmel.npy", "activity.npy", "labels.npy", "floor.npy")
"""annotations.json is written only when the window has spans; the mask is meta.num_microturns ones, then zeros."""


def stored_name(name: str) -> str:
    """The tar member name (after the key) of a window member: compressed ones get `.zst`."""
    return name + COMPRESSED_SUFFIX if name in WINDOW_MEMBERS else name


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowPerspective:
    """meta.perspectives[p]: one speaker playing the model, as the loader will see the window."""

    perspective: str  # key-safe id of the speaker playing the model
    input: int  # row of dmel.npy / activity.npy of the user (the most talkative other party)
    output: int  # row of the model's speaker
    others: tuple[str, ...]  # original ids of the remaining parties (mixed into `others`)
    others_row: int | None  # row of others.dmel.npy / others.activity.npy; None with two parties
    interruptions: tuple[SampleInterruption, ...]  # this perspective's interruption onsets in the window

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(others=list(self.others), interruptions=[x.to_dict() for x in self.interruptions])
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> WindowPerspective:
        return cls(
            **record_fields(
                cls,
                obj,
                "meta.perspectives",
                others=tuple(obj.get("others", ())),
                interruptions=tuple(SampleInterruption.from_dict(x) for x in obj.get("interruptions", ())),
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowMeta:
    """meta.json of a stored window (format 3)."""

    format_version: int  # schemas.shard.FORMAT_VERSION
    key: str  # '{conversation_key}_{window:05d}'
    conversation_id: str
    conversation_key: str
    window: int
    start_microturn: int
    num_microturns: int
    window_microturns: int
    last_valid_samples: int
    conversation_samples: int
    speakers: tuple[str, ...]  # original ids of the stored streams: row i of dmel.npy and activity.npy
    perspectives: tuple[WindowPerspective, ...]  # in speaker order; row p of labels.npy and floor.npy
    language: str
    source: str
    licence: str
    split: str
    tags: Mapping[str, str]
    video: SampleVideo | None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(
            speakers=list(self.speakers),
            perspectives=[p.to_dict() for p in self.perspectives],
            tags=dict(self.tags),
            video=None if self.video is None else self.video.to_dict(),
        )
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> WindowMeta:
        video = obj.get("video")
        return cls(
            **record_fields(
                cls,
                obj,
                "meta.json",
                speakers=tuple(obj.get("speakers", ())),
                perspectives=tuple(WindowPerspective.from_dict(p) for p in obj.get("perspectives", ())),
                video=None if video is None else SampleVideo.from_dict(video),
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowWord:
    """One entry of a window's words.json: a word with both of its placements (heard by the others: the micro-turn
    of its end; said by the model: of its start); a perspective takes the one its role needs."""

    text: str
    speaker: str
    start_s: float  # seconds from the window start
    end_s: float
    heard_microturn: int  # window micro-turn containing its end (may be outside the window)
    spoken_microturn: int  # window micro-turn containing its start (may be outside the window)
    source: str
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> WindowWord:
        return cls(**record_fields(cls, obj, "words.json"))


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowAnnotation:
    """One entry of a window's annotations.json (SampleAnnotation without the perspective's stream)."""

    label: str
    speaker: str
    start_microturn: int
    end_microturn: int
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> WindowAnnotation:
        return cls(**record_fields(cls, obj, "annotations.json"))


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSample:
    """A stored sample (format 3): one window of a conversation, every speaker's streams once (S stored speakers,
    P perspectives, R perspectives with an `others` mix, W micro-turns). `view(p)` is what the loader sees when
    perspective p plays the model (a MicroTurnSample, the format-2 record).

    Members (`{key}.{name}.zst`, zstd; schemas/shard.py):

    | member              | dtype   | shape          | meaning                                                   |
    |---------------------|---------|----------------|-----------------------------------------------------------|
    | meta.json           | JSON    |                | WindowMeta (speakers = rows, perspectives)                |
    | dmel.npy            | uint8   | (S, 40, W*16)  | each speaker's dMel codes, delta-packed (pack_codes)      |
    | others.dmel.npy     | uint8   | (R, 40, W*16)  | the `others` mix of each perspective that has one          |
    | activity.npy        | float32 | (W, S)         | speech fraction of each speaker per micro-turn            |
    | others.activity.npy | float32 | (R, W)         | speech fraction of each `others` side                     |
    | labels.npy          | uint8   | (P, W)         | per perspective: bit mask of LABEL_BITS                   |
    | floor.npy           | int16   | (P, W)         | per perspective: micro-turns until the next floor change  |
    | words.json          | JSON    |                | WindowWord list (both placements)                         |
    | annotations.json    | JSON    |                | WindowAnnotation list (only when the window has spans)    |
    | targets.json        | JSON    |                | per perspective, a SampleTarget list (only with targets)  |
    | events.json         | JSON    |                | per perspective, a SampleEvent list (only with events)    |
    | frames.index.npy    | int64   | (W, 2)         | as in format 2, beside frames.mjpeg (stored as it is)     |

    and `s{i}.flac` / `o{r}.flac`, not compressed: speaker row i's / others row r's audio (--keep_audio). The
    mask (1 = a micro-turn of the conversation) is not stored: it is meta.num_microturns ones, then zeros.

    Cost with more than two parties: one dMel stream per speaker plus one `others` mix per perspective (the mix is
    the dMel of the summed audio, which the speakers' codes cannot give back exactly), i.e. 2N streams for N
    speakers where format 2 stored 3N; two parties store 2 (format 2: 4).
    """

    meta: WindowMeta
    dmel: np.ndarray  # (S, W, 16, 80) uint8 codes, unpacked
    others_dmel: np.ndarray | None  # (R, W, 16, 80) uint8 codes; None when R = 0
    activity: np.ndarray  # (W, S) float32
    others_activity: np.ndarray | None  # (R, W) float32
    labels: np.ndarray  # (P, W) uint8
    floor: np.ndarray  # (P, W) int16
    mask: np.ndarray  # (W,) uint8
    words: tuple[WindowWord, ...] = ()
    annotations: tuple[WindowAnnotation, ...] = ()
    frames: tuple[bytes | None, ...] | None = None
    audio: Mapping[str, np.ndarray] | None = None  # 's{i}' / 'o{r}' -> (W * 3200,) float32
    targets: tuple[tuple[SampleTarget, ...], ...] | None = None  # per perspective
    events: tuple[tuple[SampleEvent, ...] | None, ...] | None = None  # per perspective

    def to_members(self) -> dict[str, bytes]:
        """The tar members ({stored name: bytes}); equal records give equal bytes."""
        plain: dict[str, bytes] = {
            "meta.json": encode_json(self.meta.to_dict()),
            "words.json": encode_json([w.to_dict() for w in self.words]),
            "dmel.npy": encode_array(_packed(self.dmel)),
            "activity.npy": encode_array(self.activity),
            "labels.npy": encode_array(self.labels),
            "floor.npy": encode_array(self.floor),
        }
        if self.annotations:
            plain["annotations.json"] = encode_json([a.to_dict() for a in self.annotations])
        if self.others_dmel is not None:
            plain["others.dmel.npy"] = encode_array(_packed(self.others_dmel))
            plain["others.activity.npy"] = encode_array(self.others_activity)  # type: ignore[arg-type]  # set with others_dmel
        if self.targets is not None:
            plain["targets.json"] = encode_json([[t.to_dict() for t in ts] for ts in self.targets])
        if self.events is not None:
            plain["events.json"] = encode_json(
                [None if es is None else [e.to_dict() for e in es] for es in self.events]
            )
        members = {stored_name(n): compress(b) for n, b in plain.items()}
        if self.frames is not None:
            members["frames.mjpeg"], index = encode_frames(list(self.frames))
            members[stored_name("frames.index.npy")] = compress(encode_array(index))
        for name, pcm in (self.audio or {}).items():
            members[f"{name}.flac"] = encode_flac(pcm, SAMPLE_RATE_HZ)
        return members

    @classmethod
    def from_members(cls, members: Mapping[str, bytes]) -> WindowSample:
        """Decode and check a stored window's members (names after the key, as stored).

        Raises:
            FormatVersionError: the sample is in another format version (format 2: re-run the job).
            ValueError: naming every problem found (missing, unknown or undecodable members, dtypes, shapes, rows).
        """
        decoded = decode_window_members(members)
        problems = list(decoded.pop("__problems__"))
        meta = None
        words: tuple[WindowWord, ...] | None = None
        annotations: tuple[WindowAnnotation, ...] | None = None
        targets = events = None
        try:
            if "meta.json" in decoded:
                meta = WindowMeta.from_dict(decoded["meta.json"])
            if "words.json" in decoded:
                words = tuple(WindowWord.from_dict(w) for w in decoded["words.json"])
            annotations = tuple(WindowAnnotation.from_dict(a) for a in decoded.get("annotations.json", []))
            if "targets.json" in decoded:
                targets = tuple(tuple(SampleTarget.from_dict(t) for t in ts) for ts in decoded["targets.json"])
            if "events.json" in decoded:
                events = tuple(
                    None if es is None else tuple(SampleEvent.from_dict(e) for e in es) for es in decoded["events.json"]
                )
        except (ValueError, TypeError, AttributeError) as e:
            problems.append(str(e))
        if meta is not None:
            problems += _window_problems(meta, decoded, targets, events)
        if ("frames.mjpeg" in decoded) != ("frames.index.npy" in decoded):
            problems.append("frames.mjpeg and frames.index.npy come together")
        if problems or meta is None or words is None or annotations is None:
            raise ValueError("; ".join(problems))
        frames = None
        if "frames.index.npy" in decoded:
            mjpeg = decoded["frames.mjpeg"]
            frames = tuple(mjpeg[o : o + n] if n else None for o, n in decoded["frames.index.npy"].tolist())
        audio = {n[: -len(".flac")]: v for n, v in decoded.items() if n.endswith(".flac")} or None
        return cls(
            meta=meta,
            dmel=decoded["dmel.npy"],
            others_dmel=decoded.get("others.dmel.npy"),
            activity=decoded["activity.npy"],
            others_activity=decoded.get("others.activity.npy"),
            labels=decoded["labels.npy"],
            floor=decoded["floor.npy"],
            mask=decoded["mask.npy"],
            words=words,
            annotations=annotations,
            frames=frames,
            audio=audio,
            targets=targets,
            events=events,
        )

    def view(self, p: int) -> MicroTurnSample:
        """The window seen from perspective p (meta.perspectives[p] plays the model): the format-2 record."""
        meta, persp = self.meta, self.meta.perspectives[p]
        user, output = meta.speakers[persp.input], meta.speakers[persp.output]
        stream_of = {user: "input", output: "output", **{s: "others" for s in persp.others}}
        words = view_words([w.to_dict() for w in self.words], stream_of, meta.num_microturns)
        r = persp.others_row
        others_act = (
            self.others_activity[r]
            if r is not None and self.others_activity is not None
            else np.zeros(len(self.mask), np.float32)
        )
        audio = None
        if self.audio:
            audio = {"input": self.audio[f"s{persp.input}"], "output": self.audio[f"s{persp.output}"]}
            if r is not None:
                audio["others"] = self.audio[f"o{r}"]
        return MicroTurnSample(
            meta=view_meta(meta, p, words),
            input_dmel=self.dmel[persp.input],
            output_dmel=self.dmel[persp.output],
            others_dmel=None if r is None or self.others_dmel is None else self.others_dmel[r],
            activity=np.stack([self.activity[:, persp.input], others_act, self.activity[:, persp.output]], axis=1),
            labels=self.labels[p],
            floor=self.floor[p],
            mask=self.mask,
            words=tuple(SampleWord(**w) for w in words),  # view_words gives exactly SampleWord's fields
            annotations=tuple(
                SampleAnnotation(stream=stream_of[a.speaker], **a.to_dict())
                for a in self.annotations
                if a.speaker in stream_of
            ),
            frames=self.frames,
            audio=audio,
            targets=None if self.targets is None else self.targets[p],
            events=None if self.events is None else self.events[p],
        )


def decode_window_members(members: Mapping[str, bytes]) -> dict[str, Any]:
    """Decompress and decode each member of a stored window (names after the key): {plain name: value}, dMel
    unpacked to codes, plus '__problems__' (a list of messages: missing, unknown, undecodable members).

    Raises:
        FormatVersionError: meta.json says another format version (or the sample is in format 2's layout).
    """
    problems: list[str] = []
    out: dict[str, Any] = {}
    if "meta.json" in members and "meta.json.zst" not in members:  # format 2: plain members, one per perspective
        raise FormatVersionError(version_problem(_version_of(members["meta.json"]), "the dataset") or "")
    for name, data in members.items():
        if name.endswith(COMPRESSED_SUFFIX) and name[: -len(COMPRESSED_SUFFIX)] in WINDOW_MEMBERS:
            plain = name[: -len(COMPRESSED_SUFFIX)]
            try:
                value = WINDOW_MEMBERS[plain](decompress(data))
                if plain in ("dmel.npy", "others.dmel.npy"):
                    value = _unpacked(value, plain)
                out[plain] = value
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                problems.append(f"{name} does not decode: {e}")
        elif name == "frames.mjpeg":
            out[name] = bytes(data)
        elif re.fullmatch(r"[so]\d+\.flac", name):
            try:
                out[name] = decode_flac(data)
            except Exception as e:  # noqa: BLE001 - soundfile raises its own errors
                problems.append(f"{name} does not decode: {e}")
        else:
            problems.append(f"unknown member {name}")
    meta = out.get("meta.json")
    if meta is not None and not isinstance(meta, Mapping):
        raise ValueError(f"malformed meta.json: a JSON object expected, got {type(meta).__name__}")
    if isinstance(meta, Mapping):
        message = version_problem(meta.get("format_version"), "the dataset")
        if message:
            raise FormatVersionError(message)
        w, n = meta.get("window_microturns"), meta.get("num_microturns")
        if isinstance(w, int) and isinstance(n, int) and 0 <= n <= w:
            out["mask.npy"] = (np.arange(w) < n).astype(np.uint8)  # not stored: meta says it
        else:
            problems.append(f"meta.json: num_microturns {n!r} / window_microturns {w!r} are not 0 <= n <= W")
    problems += [f"missing member {stored_name(n)}" for n in WINDOW_REQUIRED if n not in out]
    out["__problems__"] = problems
    return out


def _version_of(data: bytes) -> object:
    try:
        return decode_json(data).get("format_version")
    except (ValueError, AttributeError):
        return None


def _packed(codes: np.ndarray) -> np.ndarray:
    """(n, W, 16, 80) codes -> (n, 40, W * 16) delta-packed over the window's frames (pack_codes)."""
    n, w = codes.shape[:2]
    return pack_codes(codes.reshape(n, w * FRAMES_PER_MICROTURN, DMEL_CHANNELS))


def _unpacked(packed: np.ndarray, name: str) -> np.ndarray:
    """(n, 40, W * 16) packed -> (n, W, 16, 80) codes."""
    if (
        packed.dtype != np.uint8
        or packed.ndim != 3
        or packed.shape[1] != DMEL_CHANNELS // 2
        or packed.shape[2] % FRAMES_PER_MICROTURN
    ):
        raise ValueError(f"{name}: dtype {packed.dtype} shape {packed.shape}, expected uint8 (n, 40, W * 16)")
    n, w = packed.shape[0], packed.shape[2] // FRAMES_PER_MICROTURN
    return unpack_codes(packed).reshape(n, w, FRAMES_PER_MICROTURN, DMEL_CHANNELS)


def view_words(words: list[dict[str, Any]], stream_of: Mapping[str, str], num_microturns: int) -> list[dict[str, Any]]:
    """The words.json entries (SampleWord dicts) of one perspective from a window's WindowWord dicts: each word of
    a speaker in `stream_of` placed by its role (the model's by start, the others' by end), kept when it falls in
    the window's first `num_microturns` micro-turns."""
    out = []
    for w in words:
        stream = stream_of.get(w["speaker"])
        if stream is None:
            continue
        mt = w["spoken_microturn"] if stream == "output" else w["heard_microturn"]
        if 0 <= mt < num_microturns:
            out.append(
                {
                    "text": w["text"],
                    "stream": stream,
                    "speaker": w["speaker"],
                    "start_s": w["start_s"],
                    "end_s": w["end_s"],
                    "microturn": mt,
                    "source": w["source"],
                    "score": w["score"],
                }
            )
    out.sort(key=lambda w: (w["microturn"], w["start_s"], w["end_s"], w["speaker"], w["text"]))
    return out


def view_meta(meta: WindowMeta, p: int, words: list[dict[str, Any]]) -> SampleMeta:
    """The format-2 meta of perspective p of a window (key: the window's key; `perspective` says which)."""
    persp = meta.perspectives[p]
    speakers = SampleSpeakers(input=meta.speakers[persp.input], others=persp.others, output=meta.speakers[persp.output])
    sources: dict[str, int] = {}
    for w in words:
        sources[w["source"]] = sources.get(w["source"], 0) + 1
    return SampleMeta(
        format_version=meta.format_version,
        key=meta.key,
        conversation_id=meta.conversation_id,
        conversation_key=meta.conversation_key,
        perspective=persp.perspective,
        window=meta.window,
        start_microturn=meta.start_microturn,
        num_microturns=meta.num_microturns,
        window_microturns=meta.window_microturns,
        last_valid_samples=meta.last_valid_samples,
        conversation_samples=meta.conversation_samples,
        speakers=speakers,
        streams=tuple(sorted(("input", "output", *(("others",) if persp.others_row is not None else ())))),
        language=meta.language,
        source=meta.source,
        licence=meta.licence,
        split=meta.split,
        word_sources=dict(sorted(sources.items())),
        tags=dict(meta.tags),
        interruptions=persp.interruptions,
        video=meta.video,
    )


def _window_problems(
    meta: WindowMeta,
    decoded: Mapping[str, Any],
    targets: tuple[tuple[SampleTarget, ...], ...] | None,
    events: tuple[tuple[SampleEvent, ...] | None, ...] | None,
) -> list[str]:
    """Dtype, shape and row problems of a window's decoded arrays against its meta."""
    w, s, p = meta.window_microturns, len(meta.speakers), len(meta.perspectives)
    r = sum(x.others_row is not None for x in meta.perspectives)
    expected = {
        "dmel.npy": (np.uint8, (s, w, FRAMES_PER_MICROTURN, DMEL_CHANNELS)),
        "others.dmel.npy": (np.uint8, (r, w, FRAMES_PER_MICROTURN, DMEL_CHANNELS)),
        "activity.npy": (np.float32, (w, s)),
        "others.activity.npy": (np.float32, (r, w)),
        "labels.npy": (np.uint8, (p, w)),
        "floor.npy": (np.int16, (p, w)),
        "frames.index.npy": (np.int64, (w, 2)),
    }
    problems = []
    for name, (dtype, shape) in expected.items():
        array = decoded.get(name)
        if array is not None and (array.dtype != dtype or array.shape != shape):
            problems.append(f"{name}: dtype {array.dtype} shape {array.shape}, expected {np.dtype(dtype)} {shape}")
    if r and "others.dmel.npy" not in decoded:
        problems.append(f"missing member {stored_name('others.dmel.npy')} ({r} perspectives have others)")
    if p == 0:
        problems.append("meta.perspectives is empty")
    for i, x in enumerate(meta.perspectives):
        if not (0 <= x.input < s and 0 <= x.output < s) or x.input == x.output:
            problems.append(f"meta.perspectives[{i}]: rows input {x.input}, output {x.output} of {s} speakers")
        if x.others_row is not None and not 0 <= x.others_row < r:
            problems.append(f"meta.perspectives[{i}]: others_row {x.others_row} of {r}")
    for name, per in (("targets.json", targets), ("events.json", events)):
        if per is not None and len(per) != p:
            problems.append(f"{name}: {len(per)} perspective lists, expected {p}")
    for t in (t for ts in targets or () for t in ts):
        problems += [f"targets.json: {x}" for x in t.problems(meta.num_microturns)]
    for es in events or ():
        problems += [f"events.json: {x}" for x in event_problems(list(es or ()), meta.num_microturns)]
    for name in ("s", "o"):
        rows = s if name == "s" else r
        for i in range(rows):
            pcm = decoded.get(f"{name}{i}.flac")
            if pcm is not None and pcm.shape != (w * SAMPLES_PER_MICROTURN,):
                problems.append(f"{name}{i}.flac: {pcm.shape} samples, expected ({w * SAMPLES_PER_MICROTURN},)")
    index = decoded.get("frames.index.npy")
    if index is not None and index.shape == (w, 2):
        if (index < 0).any() or (index.sum(axis=1) > len(decoded.get("frames.mjpeg", b""))).any():
            problems.append("frames.index.npy: offsets outside frames.mjpeg")
    return problems


def perspective_members(window: Mapping[str, Any], p: int) -> dict[str, Any]:
    """A decoded window (decode_window_members) seen from perspective p: the decoded format-2 members
    ({'meta.json': dict, 'input.dmel.npy': (W, 16, 80) uint8, 'labels.npy': (W,), 'words.json': [...], ...}),
    what schemas.reader yields and the trainer packs. Arrays are views of the window's, not copies."""
    meta = WindowMeta.from_dict(window["meta.json"])
    persp = meta.perspectives[p]
    user, output = meta.speakers[persp.input], meta.speakers[persp.output]
    stream_of = {user: "input", output: "output", **{s: "others" for s in persp.others}}
    words = view_words(window.get("words.json", []), stream_of, meta.num_microturns)
    dmel = window["dmel.npy"]
    out: dict[str, Any] = {
        "meta.json": view_meta(meta, p, words).to_dict(),
        "words.json": words,
        "annotations.json": [
            {**a, "stream": stream_of[a["speaker"]]}
            for a in window.get("annotations.json", [])
            if a["speaker"] in stream_of
        ],
        "input.dmel.npy": dmel[persp.input],
        "output.dmel.npy": dmel[persp.output],
        "mask.npy": window["mask.npy"],
    }
    r = persp.others_row
    if r is not None:
        out["others.dmel.npy"] = window["others.dmel.npy"][r]
    if "activity.npy" in window:
        act = window["activity.npy"]
        others = window["others.activity.npy"][r] if r is not None else np.zeros(len(act), np.float32)
        out["activity.npy"] = np.stack([act[:, persp.input], others, act[:, persp.output]], axis=1)
    for name in ("labels.npy", "floor.npy"):
        if name in window:
            out[name] = window[name][p]
    if window.get("targets.json") is not None:
        out["targets.json"] = window["targets.json"][p]
    if window.get("events.json") is not None and window["events.json"][p] is not None:
        out["events.json"] = window["events.json"][p]
    for name in ("frames.mjpeg", "frames.index.npy"):
        if name in window:
            out[name] = window[name]
    for stream, name in (("input", f"s{persp.input}"), ("output", f"s{persp.output}"), ("others", f"o{r}")):
        if f"{name}.flac" in window:
            out[f"{stream}.flac"] = window[f"{name}.flac"]
    return out
