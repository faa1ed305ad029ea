"""The micro-turn sample: one window of one conversation seen from one perspective (DESIGN.md §3-§5).

    python -c "from schemas.sample import MEMBERS; print(list(MEMBERS))"

The record `MicroTurnSample` (meta `SampleMeta`, words `SampleWord`, spans `SampleAnnotation`) is the format:
pipeline/windows.py fills it in and writes `to_members()`; schemas/validate.py checks shards with `from_members`;
schemas/reader.py decodes each member with `decode_member`. A sample holds W micro-turns (default 150 = 30 s).
Members, stored in the shard under ``{key}.{member}``:

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN
from schemas.events import SampleEvent, event_problems
from schemas.frames import encode_frames
from schemas.shard import decode_array, decode_flac, decode_json, encode_array, encode_flac, encode_json, record_fields
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
