"""The input bundle: one conversation's audio tracks, transcript and metadata (DESIGN.md §2).

    python -c "from schemas.bundle import parse_rttm; print(parse_rttm('SPEAKER m 1 0.5 1.0 <NA> <NA> A <NA> <NA>'))"

On disk a bundle is a directory with a ``bundle.json`` (or one line of a JSONL manifest)::

    {
      "bundle_version": 1,
      "id": "demo-0001",                      # any string; sanitised for sample keys, kept verbatim in meta
      "language": "en", "source": "microturn-demo", "licence": "CC0-1.0", "split": "train",
      "tracks": [                             # one per speaker
        {"speaker": "A", "path": "A.wav"},                   # one file per speaker (wav/flac/mp3/...)
        {"speaker": "B", "path": "both.wav", "channel": 1}   # or a channel of a multi-channel file
      ],                                      # "start_s", "duration_s": optional, a stretch of the file (seconds)
                                              # or {"speaker", "pieces": [{"path", "at_s", "start_s", "end_s"}]}:
                                              #   stretches of files placed at conversation times (`Track`)
      "words": "words.json",                  # optional: file or inline list of
                                              #   {"text", "start", "end", "speaker", "score"?, "source"?}  (seconds)
      "rttm": "turns.rttm",                   # optional: speaker segments when there are no word times
      "text": {"A": "so I was thinking",      # optional, instead of "words": each speaker's words without times,
               "B": {"path": "B.txt"}},       #   inline or in a file; the align stage times them (--aligner);
                                              #   a line per utterance (turn) keeps turns apart when aligning
      "video": "camera.mp4",                  # optional: or {"path", "offset_s", "audio_speaker"}; see below
      "model_speakers": ["A", "B"],           # optional: who may play the model (default: every speaker)
      "tags": {"category": "weapons"},        # optional: string metadata, copied to every sample and the index
      "annotations": [                        # optional: labelled spans (seconds), e.g. where a refusal is spoken
        {"label": "refusal", "speaker": "B", "start": 3.2, "end": 5.9}
      ],
      "events": [                             # optional: timed tool calls and results (schemas/events.py)
        {"kind": "task_start", "time_s": 2.3, "arguments": {"name": "convert 20 EUR to USD"}}
      ]
    }

Video: frames go on the input side. With separate audio tracks, conversation time 0 is the video's time
``offset_s`` (default 0). With no tracks, the video's own audio (if any) becomes the stream of ``audio_speaker``
(default "user"), else that stream is silence; a conversation with one speaker gets a silent model ("model").

Paths are relative to the bundle file's directory unless absolute (any scheme Beam's FileSystems knows); the job
rejects a bundle naming a file outside its input root unless run with --allow_outside_paths. "model_speakers" is a
list of names (a string is rejected, not read as its characters); a track's "channel" is an integer (not a bool).
A track may omit "speaker" when an RTTM is given: the pipeline then matches tracks to RTTM speakers by energy.
A bundle whose audio is a single track is a mixed recording: the align stage splits it into speakers by its RTTM,
or by diarization (--diarize_model) when it has none.

Words without times: a bundle with neither "words" nor "text" is transcribed by the configured aligner; one with
"text" (whitespace-separated tokens per speaker, transcript markup such as AMI's "L_C_D_" allowed) is aligned only.
Words the align stage makes carry ``source`` "asr" (transcribed) or "aligned" (given text, times from the aligner)
and the aligner's ``score`` in [0, 1]; a word the aligner could not place has ``score`` null: its times are
interpolated between its neighbours.

This module parses text into records; reading files is the pipeline's job (``read_text`` callbacks), so the
schema stays independent of any file system.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import TimelineEvent, parse_events
from schemas.targets import Target, TargetError, parse_targets, target_to_dict

BUNDLE_VERSION = 1
WORD_SOURCES = ("human", "tts", "aligned", "asr")
MOSHI_MAIN_SPEAKER = "SPEAKER_MAIN"
"""moshi-finetune labels the model (left channel) SPEAKER_MAIN; every other label is the user (right channel)."""


BUNDLE_KINDS = (
    "malformed_json",  # bundle.json, a manifest line or a words file is not valid JSON
    "not_an_object",  # the bundle is not a JSON object
    "unsupported_version",  # bundle_version this reader does not know
    "no_id",  # the bundle has no 'id'
    "no_tracks",  # no 'tracks' list (and no video)
    "bad_track",  # a track without 'path', or a channel that is not a non-negative integer
    "duplicate_speaker",  # a speaker named by two tracks
    "unnamed_tracks",  # tracks without 'speaker' and no RTTM to match them against
    "bad_video",  # 'video' is neither a path nor an object with 'path'
    "bad_number",  # a time or score that is not a finite number
    "bad_word",  # a word that is not {text, start, end, speaker} with 0 <= start <= end and a known source
    "bad_transcript",  # a transcript that is not a list of words
    "bad_rttm",  # an RTTM line that is not a SPEAKER record, or negative times
    "bad_text",  # 'text' that is not {speaker: text or {"path": file}}
    "words_and_text",  # both 'words' and 'text'
    "bad_tags",  # 'tags' that are not string values
    "bad_annotation",  # an annotation without label, speaker, start, end, or with bad times
    "bad_index_line",  # a moshi-finetune data.jsonl line whose 'path' does not name a .wav file
    "bad_event",  # an 'events' entry that is not a valid event (schemas/events.py)
    "unreadable_file",  # a file of the bundle (bundle.json, transcript, RTTM, text) cannot be read
    "unknown_input",  # an input layout the reader does not know
    "bad_model_speakers",  # 'model_speakers' that is not a list of speaker names
    "malformed_bundle",  # any other failure to parse the bundle (wrong JSON types the checks above miss)
    "too_deep",  # JSON nested deeper than the parser can follow
    "not_utf_text",  # a text file or manifest line that is not UTF-8
    "not_a_regular_file",  # a path that is a FIFO, a device or a directory (reading it would block or never end)
    "file_too_large",  # a text file over the size limit (--max_text_mb)
    "path_outside_input",  # a path outside the input root (allowed with --allow_outside_paths)
    "unencodable_path",  # a path that is not a valid file name (a lone surrogate)
    "lhotse_bad_line",  # a Lhotse manifest line without the id / recording_id that places it, or a repeated id
    "lhotse_bad_recording",  # a Lhotse recording without id, duration, file sources with channels, or with transforms
    "lhotse_bad_supervision",  # a Lhotse supervision without start, duration, speaker or channel, or with bad times
    "lhotse_orphan_supervision",  # a Lhotse supervision whose recording_id is not in its recordings manifest
    "lhotse_no_supervisions",  # a Lhotse recording or cut without supervisions (nothing names its speakers)
    "lhotse_channel_map",  # Lhotse supervisions whose speakers cannot be given one channel each (or one shared)
    "lhotse_bad_cut",  # a Lhotse cut that is not a MonoCut/MultiCut with a recording, or lies outside it
    "bad_target",  # a proactive target that is malformed (schemas/targets.py)
    "gander_bad_conversation",  # a Gander line (turns, no tracks) with malformed turns, times, words or tool calls
    "gander_needs_speech",  # a Gander assistant turn with text but no speech_out: `microturn import gander` speaks it
    "gander_no_user_audio",  # a Gander user turn without audio_in
)
"""Kinds of `BundleError` (the read stage's rejections; pipeline.rejects.KINDS lists every stage's)."""


class BundleError(ValueError):
    """A bundle that cannot be used: `kind` (one of BUNDLE_KINDS) for counting, the message as the readable reason
    that goes to the rejected list."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in BUNDLE_KINDS:
            raise ValueError(f"unknown BundleError kind {kind!r}; expected one of {BUNDLE_KINDS}")
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple:  # pickles with both arguments (the default would pass the message only)
        return type(self), (self.kind, str(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class Word:
    """One word on a speaker's timeline. Times in seconds from the start of the conversation."""

    text: str
    start_s: float
    end_s: float
    speaker: str
    score: float | None = None
    source: str = "human"


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """A stretch of one speaker's speech (an RTTM turn). Times in seconds."""

    start_s: float
    end_s: float
    speaker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Annotation:
    """A labelled stretch of one speaker's stream (e.g. a spoken refusal). Times in seconds."""

    label: str
    speaker: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """A stretch of an audio file placed on the conversation clock (a Gander turn's ``audio_in`` / ``speech_out``):
    file seconds [`start_s`, `end_s`) (None: to the file's end), all channels mixed, played from conversation time
    `at_s` (seconds)."""

    path: str
    at_s: float
    start_s: float = 0.0
    end_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Track:
    """Where one speaker's audio is: a file, and optionally one channel (0-based) of a multi-channel file.
    A track with no path is digital silence (a silent model, or a video without sound). `start_s` / `duration_s`:
    the stretch of the file that is the conversation (a Lhotse cut), seconds; default the whole file.

    A track of placed `pieces` has no path: its audio is the pieces mixed at their conversation times, silence
    elsewhere, at least `duration_s` seconds long (a Gander conversation's length; start_s and channel unused)."""

    speaker: str | None
    path: str | None
    channel: int | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    pieces: tuple[Piece, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file the track reads: its path, or its pieces' files (each once, in order)."""
        if self.path is not None:
            return (self.path,)
        return tuple(dict.fromkeys(p.path for p in self.pieces))


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoSpec:
    """The bundle's video. `offset_s`: the video time that is conversation time 0 (None: 0, or the first audio
    packet when the audio comes from the video itself). `audio_speaker`: whose stream the video's own audio is."""

    path: str
    offset_s: float | None = None
    audio_speaker: str = "user"


SILENT_MODEL = "model"


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """A parsed input bundle. `origin` names where it came from (bundle.json path or manifest line)."""

    id: str
    origin: str
    tracks: tuple[Track, ...]
    words: tuple[Word, ...] | None = None
    segments: tuple[Segment, ...] | None = None
    language: str = "und"
    source: str = "unknown"
    licence: str = "unknown"
    split: str = "train"
    model_speakers: tuple[str, ...] | None = None
    video: VideoSpec | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()
    texts: Mapping[str, str] | None = None  # each speaker's words without times ("text" in the bundle)
    extra: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()  # proactive targets (schemas/targets.py), sorted by due time
    events: tuple[TimelineEvent, ...] = ()  # timed events (schemas/events.py): delegation, tool calls, results

    @property
    def speakers(self) -> tuple[str, ...]:
        """Speaker ids in track order (tracks without a speaker are not counted)."""
        return tuple(t.speaker for t in self.tracks if t.speaker is not None)


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise BundleError("bad_number", f"{what} is not a number: {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BundleError("bad_number", f"{what} is not a number: {value!r:.80}") from None
    except OverflowError:
        raise BundleError("bad_number", f"{what} is too large: an integer of {len(str(value))} digits") from None
    if not math.isfinite(out):
        raise BundleError("bad_number", f"{what} is not finite: {value!r}")
    return out


def _word(obj: Any, index: int) -> Word:
    if not isinstance(obj, Mapping):
        raise BundleError("bad_word", f"word #{index} is not an object: {obj!r:.80}")
    for key in ("text", "start", "end", "speaker"):
        if key not in obj:
            raise BundleError("bad_word", f"word #{index} has no {key!r}: {dict(obj)!r:.120}")
    start = _finite(obj["start"], f"word #{index} start")
    end = _finite(obj["end"], f"word #{index} end")
    if start < 0 or end < start:
        raise BundleError(
            "bad_word", f"word #{index} {obj['text']!r} has start {start} s and end {end} s (need 0 <= start <= end)"
        )
    source = str(obj.get("source", "human"))
    if source not in WORD_SOURCES:
        raise BundleError("bad_word", f"word #{index} has source {source!r}; expected one of {WORD_SOURCES}")
    score = obj.get("score")
    return Word(
        text=str(obj["text"]),
        start_s=start,
        end_s=end,
        speaker=str(obj["speaker"]),
        score=None if score is None else _finite(score, f"word #{index} score"),
        source=source,
    )


def parse_words(obj: Any) -> tuple[Word, ...]:
    """Words from a decoded JSON value: a list of word objects, ``{"words": [...]}``, or moshi-finetune's
    ``{"alignments": [[word, [start, end], speaker], ...]}``. Sorted by (start, end, speaker)."""
    if isinstance(obj, Mapping) and "alignments" in obj:
        if not isinstance(obj["alignments"], list):
            raise BundleError("bad_transcript", f"'alignments' is not a list: {type(obj['alignments']).__name__}")
        items = []
        for i, row in enumerate(obj["alignments"]):
            if not (isinstance(row, Sequence) and len(row) == 3 and isinstance(row[1], Sequence) and len(row[1]) == 2):
                raise BundleError("bad_word", f"alignment #{i} is not [word, [start, end], speaker]: {row!r:.80}")
            items.append({"text": row[0], "start": row[1][0], "end": row[1][1], "speaker": row[2]})
        obj = items
    elif isinstance(obj, Mapping) and "words" in obj:
        obj = obj["words"]
    if not isinstance(obj, list):
        raise BundleError("bad_transcript", f"transcript is not a list of words: {type(obj).__name__}")
    words = [_word(w, i) for i, w in enumerate(obj)]
    return tuple(sorted(words, key=lambda w: (w.start_s, w.end_s, w.speaker)))


def parse_words_json(text: str) -> tuple[Word, ...]:
    """`parse_words` on JSON text; malformed JSON is a BundleError with the parser's position."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError("malformed_json", f"transcript is not valid JSON: {e}") from None
    return parse_words(obj)


def parse_rttm(text: str) -> tuple[Segment, ...]:
    """Speaker segments from RTTM text (``SPEAKER file chan onset duration <NA> <NA> speaker ...``), sorted."""
    segments = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] != "SPEAKER" or len(parts) < 8:
            raise BundleError(  # the line itself is not quoted: a reason never copies a file's contents
                "bad_rttm", f"RTTM line {lineno} is not a SPEAKER record (SPEAKER file chan onset duration ...)"
            )
        onset = _finite(parts[3], f"RTTM line {lineno} onset")
        duration = _finite(parts[4], f"RTTM line {lineno} duration")
        if onset < 0 or duration < 0:
            raise BundleError("bad_rttm", f"RTTM line {lineno} has negative onset or duration")
        segments.append(Segment(start_s=onset, end_s=onset + duration, speaker=parts[7]))
    return tuple(sorted(segments, key=lambda s: (s.start_s, s.end_s, s.speaker)))


def _join(base: str, path: str) -> str:
    if "://" in path or path.startswith("/") or not base:
        return path
    if "://" in base:
        return base.rstrip("/") + "/" + path
    return posixpath.normpath(posixpath.join(base, path))


def conversation_from_dict(obj: Any, *, base: str, origin: str, read_text: Callable[[str], str]) -> Conversation:
    """Build a Conversation from a bundle object (bundle.json or a manifest line).

    Args:
        obj: the decoded JSON object.
        base: directory that relative paths are resolved against.
        origin: where the object came from, for error messages and the rejected list.
        read_text: reads a transcript file given its resolved path (the caller's file system).
    Raises:
        BundleError: with a readable reason when anything is missing or malformed.
    """
    if not isinstance(obj, Mapping):
        raise BundleError("not_an_object", f"bundle is not a JSON object: {type(obj).__name__}")
    version = obj.get("bundle_version", BUNDLE_VERSION)
    if version != BUNDLE_VERSION:
        raise BundleError(
            "unsupported_version", f"bundle_version {version!r} is not supported (this reader knows {BUNDLE_VERSION})"
        )
    if "id" not in obj or not str(obj["id"]).strip():
        raise BundleError("no_id", "bundle has no 'id'")
    video = _video(obj["video"], base) if "video" in obj else None
    tracks = _tracks(obj, base, has_video=video is not None)
    named = [t.speaker for t in tracks if t.speaker is not None]
    if len(set(named)) != len(named):
        raise BundleError("duplicate_speaker", f"speakers repeat across tracks: {named}")

    words = None
    if "words" in obj:
        spec = obj["words"]
        words = parse_words_json(read_text(_join(base, spec))) if isinstance(spec, str) else parse_words(spec)
    segments = None
    if "rttm" in obj:
        segments = parse_rttm(read_text(_join(base, str(obj["rttm"]))))
    texts = _texts(obj["text"], base, read_text) if "text" in obj else None
    if texts is not None and words is not None:
        raise BundleError("words_and_text", "give either 'words' (with times) or 'text' (without), not both")
    if len(tracks) > 1 and len(named) < len(tracks) and (segments is None or named):  # one track: diarized
        raise BundleError(
            "unnamed_tracks", "tracks without 'speaker' need an 'rttm' to match them against, and all tracks unnamed"
        )
    model_speakers = obj.get("model_speakers")
    if model_speakers is not None and (
        not isinstance(model_speakers, list) or not all(isinstance(m, str) for m in model_speakers)
    ):
        raise BundleError(  # a string is refused, not split into characters
            "bad_model_speakers", f"'model_speakers' must be a list of speaker names, got {model_speakers!r:.80}"
        )
    tags = obj.get("tags", {})
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        raise BundleError("bad_tags", "'tags' must be an object of string values")
    annotations = _annotations(obj.get("annotations", []))
    events = _events(obj.get("events", []))
    return Conversation(
        id=str(obj["id"]),
        origin=origin,
        tracks=tuple(tracks),
        words=words,
        segments=segments,
        language=str(obj.get("language", "und")),
        source=str(obj.get("source", "unknown")),
        licence=str(obj.get("licence", "unknown")),
        split=str(obj.get("split", "train")),
        model_speakers=None if model_speakers is None else tuple(str(s) for s in model_speakers),
        video=video,
        tags={str(k): str(v) for k, v in sorted(tags.items())},
        annotations=tuple(sorted(annotations, key=lambda a: (a.start_s, a.end_s, a.speaker, a.label))),
        texts=texts,
        extra={k: v for k, v in obj.items() if k not in KNOWN_KEYS},
        targets=_targets(obj),
        events=events,
    )


KNOWN_KEYS = frozenset(
    {
        "events",
        "id",
        "bundle_version",
        "tracks",
        "words",
        "rttm",
        "model_speakers",
        "language",
        "source",
        "licence",
        "split",
        "tags",
        "annotations",
        "video",
        "text",
        "targets",
    }
)
"""The bundle keys this reader reads; any other key is kept in `Conversation.extra`."""


def _video(spec: Any, base: str) -> VideoSpec:
    """The bundle's 'video': a path, or an object with 'path' and optional 'offset_s' and 'audio_speaker'."""
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, Mapping) or "path" not in spec:
        raise BundleError("bad_video", "'video' must be a path or an object with 'path'")
    offset = spec.get("offset_s")
    return VideoSpec(
        path=_join(base, str(spec["path"])),
        offset_s=None if offset is None else _finite(offset, "video offset_s"),
        audio_speaker=str(spec.get("audio_speaker", "user")),
    )


def _tracks(obj: Mapping[str, Any], base: str, *, has_video: bool) -> list[Track]:
    """The bundle's 'tracks' (may be missing or empty only when it has a video)."""
    raw_tracks = obj.get("tracks", [] if has_video else None)
    if not isinstance(raw_tracks, list) or (not raw_tracks and not has_video):
        raise BundleError("no_tracks", "bundle has no 'tracks' list (needed unless it has a 'video')")
    tracks = []
    for i, t in enumerate(raw_tracks):
        if isinstance(t, Mapping) and "path" not in t and "pieces" in t:
            tracks.append(_placed_track(t, i, base))
            continue
        if not isinstance(t, Mapping) or "path" not in t:
            raise BundleError("bad_track", f"track #{i} has no 'path'")
        channel = t.get("channel")
        if channel is not None and (not isinstance(channel, int) or isinstance(channel, bool) or channel < 0):
            raise BundleError("bad_track", f"track #{i} channel must be a non-negative integer, got {channel!r}")
        speaker = t.get("speaker")
        span = {k: _finite(t[k], f"track #{i} {k}") for k in ("start_s", "duration_s") if k in t}
        if any(v < 0 for v in span.values()):
            raise BundleError("bad_track", f"track #{i} start_s and duration_s must not be negative")
        tracks.append(
            Track(
                speaker=None if speaker is None else str(speaker),
                path=_join(base, str(t["path"])),
                channel=channel,
                start_s=span.get("start_s", 0.0),
                duration_s=span.get("duration_s"),
            )
        )
    return tracks


def _placed_track(t: Mapping[str, Any], i: int, base: str) -> Track:
    """A track of placed pieces: ``{"speaker", "pieces": [{"path", "at_s", "start_s"?, "end_s"?}], "duration_s"?}``
    (seconds; see `Track`)."""
    if not isinstance(t["pieces"], list) or not all(isinstance(p, Mapping) and "path" in p for p in t["pieces"]):
        raise BundleError("bad_track", f"track #{i} 'pieces' must be a list of objects with 'path' and 'at_s'")
    pieces = []
    for k, p in enumerate(t["pieces"]):
        times = {
            key: _finite(p[key], f"track #{i} piece #{k} {key}") for key in ("at_s", "start_s", "end_s") if key in p
        }
        if "at_s" not in times or any(v < 0 for v in times.values()):
            raise BundleError("bad_track", f"track #{i} piece #{k} needs an 'at_s' and no negative times")
        pieces.append(Piece(path=_join(base, str(p["path"])), **times))
    duration = None if t.get("duration_s") is None else _finite(t["duration_s"], f"track #{i} duration_s")
    speaker = t.get("speaker")
    return Track(
        speaker=None if speaker is None else str(speaker), path=None, pieces=tuple(pieces), duration_s=duration
    )


def _texts(spec: Any, base: str, read_text: Callable[[str], str]) -> dict[str, str]:
    """The bundle's 'text': {speaker: text or {"path": file}}, files read with `read_text`."""
    if not isinstance(spec, Mapping) or not spec:
        raise BundleError("bad_text", "'text' must be an object {speaker: text or {\"path\": file}}")
    texts = {}
    for speaker, value in spec.items():
        if isinstance(value, Mapping) and isinstance(value.get("path"), str):
            value = read_text(_join(base, value["path"]))
        if not isinstance(value, str):
            raise BundleError("bad_text", f'text of speaker {speaker!r} must be a string or {{"path": file}}')
        texts[str(speaker)] = value
    return texts


def _annotations(raw: Any) -> list[Annotation]:
    """The bundle's 'annotations': a list of {label, speaker, start, end} (seconds, 0 <= start <= end)."""
    if not isinstance(raw, list):
        raise BundleError("bad_annotation", "'annotations' must be a list of {label, speaker, start, end}")
    annotations = []
    for i, a in enumerate(raw):
        if not isinstance(a, Mapping) or not {"label", "speaker", "start", "end"} <= set(a):
            raise BundleError("bad_annotation", f"annotation #{i} needs label, speaker, start and end")
        start, end = _finite(a["start"], f"annotation #{i} start"), _finite(a["end"], f"annotation #{i} end")
        if start < 0 or end < start:
            raise BundleError(
                "bad_annotation", f"annotation #{i} has start {start} s and end {end} s (need 0 <= start <= end)"
            )
        annotations.append(Annotation(label=str(a["label"]), speaker=str(a["speaker"]), start_s=start, end_s=end))
    return annotations


def _targets(obj: Mapping[str, Any]) -> tuple[Target, ...]:
    """The bundle's optional 'targets' list (schemas/targets.py); a malformed one is a 'bad_target' BundleError."""
    if "targets" not in obj:
        return ()
    try:
        return parse_targets(obj["targets"])
    except TargetError as e:
        raise BundleError("bad_target", str(e)) from None


def _events(spec: Any) -> tuple[TimelineEvent, ...]:
    """The bundle's optional ``"events"`` (schemas/events.py) as records; malformed ones are a BundleError."""
    try:
        return parse_events(spec)
    except ValueError as e:
        raise BundleError("bad_event", f"'events': {e}") from None


def moshi_conversation(*, wav_path: str, json_text: str, origin: str) -> Conversation:
    """A moshi-finetune pair (stereo wav, left = model, right = user; alignments json) as a Conversation.

    Speakers become ``main`` (left channel, the model) and ``user`` (right channel)."""
    words = parse_words_json(json_text)
    words = tuple(
        Word(
            text=w.text,
            start_s=w.start_s,
            end_s=w.end_s,
            score=w.score,
            source=w.source,
            speaker="main" if w.speaker == MOSHI_MAIN_SPEAKER else "user",
        )
        for w in words
    )
    stem = posixpath.splitext(posixpath.basename(wav_path))[0]
    return Conversation(
        id=stem,
        origin=origin,
        tracks=(Track(speaker="main", path=wav_path, channel=0), Track(speaker="user", path=wav_path, channel=1)),
        words=words,
        source="moshi-finetune",
        model_speakers=("main",),
    )


def word_to_dict(w: Word) -> dict[str, Any]:
    """A word as a bundle's ``words`` list holds it (seconds; no ``score`` when it has none)."""
    out: dict[str, Any] = {"text": w.text, "start": w.start_s, "end": w.end_s, "speaker": w.speaker}
    if w.score is not None:
        out["score"] = w.score
    out["source"] = w.source
    return out


def _track_dict(t: Track, rel: Callable[[str | None], str | None]) -> dict[str, Any]:
    """A track as bundle.json writes it (paths through `rel`)."""
    out: dict[str, Any] = {
        k: v
        for k, v in (
            ("speaker", t.speaker),
            ("path", rel(t.path)),
            ("channel", t.channel),
            ("start_s", t.start_s or None),
            ("duration_s", t.duration_s),
        )
        if v is not None
    }
    if t.pieces:
        out["pieces"] = [
            {
                "path": rel(p.path),
                "at_s": p.at_s,
                "start_s": p.start_s,
                **({} if p.end_s is None else {"end_s": p.end_s}),
            }
            for p in t.pieces
        ]
    return out


def conversation_to_dict(conv: Conversation, *, base: str = "") -> dict[str, Any]:
    """The bundle.json object for `conv`, words inline; track paths made relative to `base` when under it."""

    def rel(path: str | None) -> str | None:
        if path is None:
            return None
        if base and path.startswith(base.rstrip("/") + "/"):
            return path[len(base.rstrip("/")) + 1 :]
        return path

    out: dict[str, Any] = {
        "bundle_version": BUNDLE_VERSION,
        "id": conv.id,
        "language": conv.language,
        "source": conv.source,
        "licence": conv.licence,
        "split": conv.split,
        "tracks": [_track_dict(t, rel) for t in conv.tracks],
    }
    if conv.words is not None:
        out["words"] = [word_to_dict(w) for w in conv.words]
    if conv.texts is not None:
        out["text"] = dict(conv.texts)
    if conv.model_speakers is not None:
        out["model_speakers"] = list(conv.model_speakers)
    if conv.video is not None:
        out["video"] = {
            k: v
            for k, v in (
                ("path", rel(conv.video.path)),
                ("offset_s", conv.video.offset_s),
                ("audio_speaker", conv.video.audio_speaker),
            )
            if v is not None
        }
    if conv.tags:
        out["tags"] = dict(conv.tags)
    if conv.annotations:
        out["annotations"] = [
            {"label": a.label, "speaker": a.speaker, "start": a.start_s, "end": a.end_s} for a in conv.annotations
        ]
    if conv.targets:
        out["targets"] = [target_to_dict(t) for t in conv.targets]
    if conv.events:
        out["events"] = [e.to_dict() for e in conv.events]
    out.update(conv.extra)
    return out


_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_HASHED = re.compile(r"-[0-9a-f]{8}$")
MAX_KEY_CHARS = 120
"""Longest sanitised id: a longer id keeps its first characters and a hash (file names stop at 255 bytes)."""


def sanitise_id(text: str) -> str:
    """A key-safe form of an id: no dots (WebDataset splits key from extension at the first dot), no slashes, no
    underscores (they separate key fields), at most `MAX_KEY_CHARS` characters. An id that had to change gets a
    short hash of itself; so does a safe id that merely looks like such a form (``a-b-3ec69c85``, the form of
    ``a/b``), so a changed id and an unchanged one never meet (the job still rejects two ids with one key)."""
    out = _UNSAFE.sub("-", text).strip("-")
    if out == text and len(out) <= MAX_KEY_CHARS and not _HASHED.search(out):
        return out
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{(out or 'x')[: MAX_KEY_CHARS - 9].rstrip('-') or 'x'}-{digest}"
