"""Lhotse manifests as `lhotse prepare` writes them, read as conversations (DESIGN.md §2).

    python -c "from pipeline.inputs.lhotse import is_lhotse_manifest as f; print(f('ami-ihm_recordings_dev.jsonl.gz'))"

A directory given to ``--input`` may hold Lhotse manifests (gzipped or plain JSONL, Lhotse 1.x field names):
- a recordings + supervisions pair, ``{corpus}_recordings_{part}.jsonl.gz`` and ``{corpus}_supervisions_{part}...``
  (``_{part}`` optional): one conversation per recording, with the supervisions whose ``recording_id`` is its id;
- a cuts file, ``cuts*.jsonl.gz`` or ``{corpus}_cuts_{part}.jsonl.gz``: one conversation per ``MonoCut`` /
  ``MultiCut``, its audio the recording's stretch ``[start, start + duration)`` and its channel(s).

Each line is parsed here, without Lhotse (the reader needs no extra package and rejects a bad line with its number
instead of stopping at it). The mapping, in Lhotse's terms (`lhotse.audio.Recording`, `lhotse.SupervisionSegment`):
- tracks: each speaker's supervisions name one ``channel`` of the recording; the recording's ``sources`` say which
  file holds that channel (``{"type": "file", "channels": [...], "source": path}``; a path relative to the manifest's
  directory or absolute). A stereo telephone call gives one track per channel; AMI-style recordings one source per
  headset. When every supervision is on the same channel, that channel is one mixed track, split into speakers by
  the supervisions (as an RTTM would be).
- words: from each supervision's ``alignment["word"]`` (items ``[symbol, start, duration, score]``; times are
  recording times, which Lhotse keeps when it cuts or shifts a supervision) when every supervision with text has
  one; else each speaker's ``text``, joined in time order, for ``--aligner`` to time; else none.
- speaker turns: the supervisions themselves (``start``, ``duration``, ``speaker``), as an RTTM's segments.
- id: the recording's (or cut's) id; language: the first supervision's; source ``lhotse:{corpus}``; split hint the
  manifest's ``{part}`` when it is train/dev/test/...

Malformed lines, recordings, supervisions and cuts raise `schemas.bundle.BundleError` with a ``lhotse_*`` kind (or
``malformed_json`` / ``unreadable_file``) when the job loads them, so one bad line is one rejection.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import posixpath
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.bundle import BundleError, Conversation, Segment, Track, Word

_MANIFEST = re.compile(
    r"^(?:(?P<corpus>.+?)_)?(?P<what>recordings|supervisions|cuts)(?:_(?P<part>.+?))?\.jsonl(?:\.gz)?$"
)
SPLIT_PARTS = ("train", "dev", "test", "eval", "valid", "validation")
"""Manifest parts that are taken as the split hint (any other part leaves the default, "train")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LhotseItem:
    """One input found in Lhotse manifests, before it is parsed. `kind`: lhotse_recording (text: JSON of the
    recording line and its supervision lines), lhotse_cut (text: the cut line), lhotse_line (a line that cannot be
    grouped: text is the line, reason why) or lhotse_unreadable (text: the error)."""

    kind: str
    origin: str  # manifest:line
    path: str  # the manifest file
    line: int
    text: str


def is_lhotse_manifest(name: str) -> bool:
    """Whether a file name is one `lhotse prepare` (or a user keeping cuts) writes."""
    match = _MANIFEST.match(posixpath.basename(name))
    return match is not None and (match["corpus"] is not None or match["what"] == "cuts")


MAX_MANIFEST_BYTES = 256 * 1024 * 1024
"""Largest Lhotse manifest read, after decompression (256 MiB, about a million supervision lines): a larger one is
one ``lhotse_unreadable`` rejection (split it into parts). A device (``/dev/zero``), a FIFO or a gzip bomb given
as a manifest is refused the same way, without reading it whole or waiting on it."""


def read_manifest_bytes(path: str, *, max_bytes: int = MAX_MANIFEST_BYTES) -> bytes:
    """The bytes of the manifest `path` (a regular file, at most `max_bytes`; see `MAX_MANIFEST_BYTES`).

    Raises:
        BundleError: not a regular file, too large, or unreadable (pipeline.inputs.safe_read).
    """
    from pipeline.inputs.safe_read import read_bytes_bounded

    return read_bytes_bounded(path, max_bytes=max_bytes)


def _gunzip(data: bytes, path: str, max_bytes: int) -> bytes:
    """`data` decompressed (every gzip member), refused once past `max_bytes` instead of growing without bound."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        out = f.read(max_bytes + 1)
    if len(out) > max_bytes:
        raise BundleError(
            "file_too_large",
            f"{path} decompresses to more than {max_bytes} bytes (a gzip bomb, or split it into parts)",
        )
    return out


def _lines(
    path: str, read_bytes: Callable[[str], bytes], max_bytes: int = MAX_MANIFEST_BYTES
) -> tuple[list[tuple[int, str | None]], str | None]:
    """(line number, text or None when not UTF-8) for every non-empty line, and an error that cut the file short."""
    try:
        data = read_bytes(path)
        if len(data) > max_bytes:
            raise BundleError("file_too_large", f"{path} is larger than {max_bytes} bytes (split it into parts)")
        if path.endswith(".gz"):
            data = _gunzip(data, path, max_bytes)
    except (OSError, EOFError, zlib.error, BundleError) as e:
        return [], f"{path}: cannot read the manifest: {e}"
    out: list[tuple[int, str | None]] = []
    for i, raw in enumerate(data.split(b"\n"), 1):
        if raw.strip():
            try:
                out.append((i, raw.decode("utf-8")))
            except UnicodeDecodeError:
                out.append((i, None))
    return out, None


def _obj(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def list_lhotse(paths: list[str], read_bytes: Callable[[str], bytes]) -> list[LhotseItem]:
    """Every conversation (and every line that cannot become one) in the Lhotse manifests among `paths`, in a
    stable order: recordings paired with the supervisions of the same corpus and part, then cuts."""
    groups: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    items: list[LhotseItem] = []
    for path in sorted(paths):
        match = _MANIFEST.match(posixpath.basename(path))
        if match is None or not is_lhotse_manifest(path):
            continue
        if match["what"] == "cuts":
            lines, error = _lines(path, read_bytes)
            items += [
                LhotseItem(kind="lhotse_cut", origin=f"{path}:{i}", path=path, line=i, text=t or "") for i, t in lines
            ]
            if error:
                items.append(LhotseItem(kind="lhotse_unreadable", origin=path, path=path, line=0, text=error))
        else:
            groups[(posixpath.dirname(path) + "/" + match["corpus"], match["part"] or "")][match["what"]] = path
    for key in sorted(groups):
        items = _pair(groups[key], read_bytes) + items
    return items


def _pair(manifests: Mapping[str, str], read_bytes: Callable[[str], bytes]) -> list[LhotseItem]:
    """One item per recording with its supervisions; supervisions that name no recording are items of their own."""
    items: list[LhotseItem] = []
    by_recording: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    sup_path = manifests.get("supervisions", "")
    if sup_path:
        lines, error = _lines(sup_path, read_bytes)
        for i, text in lines:
            obj = _obj(text)
            if obj is None or not isinstance(obj.get("recording_id"), str):
                reason = "no string 'recording_id'" if obj is not None else "not a JSON object in UTF-8"
                items.append(
                    LhotseItem(kind="lhotse_line", origin=f"{sup_path}:{i}", path=sup_path, line=i, text=reason)
                )
            else:
                by_recording[obj["recording_id"]].append((i, obj))
        if error:
            items.append(LhotseItem(kind="lhotse_unreadable", origin=sup_path, path=sup_path, line=0, text=error))
    rec_path = manifests.get("recordings", "")
    seen: set[str] = set()
    if rec_path:
        lines, error = _lines(rec_path, read_bytes)
        for i, text in lines:
            obj = _obj(text)
            rec_id = obj.get("id") if obj is not None else None
            if not isinstance(rec_id, str) or rec_id in seen:
                reason = (
                    "not a JSON object in UTF-8"
                    if obj is None
                    else f"recording id {rec_id!r} repeats"
                    if rec_id in seen
                    else "no string 'id'"
                )
                items.append(
                    LhotseItem(kind="lhotse_line", origin=f"{rec_path}:{i}", path=rec_path, line=i, text=reason)
                )
                continue
            seen.add(rec_id)
            payload = {"recording": obj, "supervisions": by_recording.get(rec_id, []), "supervisions_path": sup_path}
            items.append(
                LhotseItem(
                    kind="lhotse_recording", origin=f"{rec_path}:{i}", path=rec_path, line=i, text=json.dumps(payload)
                )
            )
        if error:
            items.append(LhotseItem(kind="lhotse_unreadable", origin=rec_path, path=rec_path, line=0, text=error))
    for rec_id in sorted(set(by_recording) - seen):
        for i, _ in by_recording[rec_id]:
            items.append(
                LhotseItem(
                    kind="lhotse_line",
                    origin=f"{sup_path}:{i}",
                    path=sup_path,
                    line=i,
                    text=f"orphan: recording_id {rec_id!r} is not in {rec_path or 'any recordings manifest beside it'}",
                )
            )
    return items


def load_lhotse(item: LhotseItem) -> Conversation:
    """Parse one item of `list_lhotse` into a Conversation.

    Raises:
        BundleError: a lhotse_* kind (or malformed_json / unreadable_file) with the line and what is wrong.
    """
    if item.kind == "lhotse_unreadable":
        raise BundleError("unreadable_file", item.text)
    if item.kind == "lhotse_line":
        if item.text.startswith("orphan: "):
            raise BundleError("lhotse_orphan_supervision", f"supervision line {item.line}: {item.text[8:]}")
        if item.text == "not a JSON object in UTF-8":
            raise BundleError("malformed_json", f"manifest line {item.line} is not a JSON object in UTF-8")
        raise BundleError("lhotse_bad_line", f"manifest line {item.line}: {item.text}")
    base = posixpath.dirname(item.path)
    corpus, part = _corpus_part(item.path)
    if item.kind == "lhotse_recording":
        payload = json.loads(item.text)
        sups = [_supervision(obj, f"supervision line {i}") for i, obj in payload["supervisions"]]
        rec = _recording(payload["recording"], base)
        return _conversation(
            rec,
            sups,
            conv_id=rec.id,
            offset_s=0.0,
            duration_s=None,
            channels=None,
            origin=item.origin,
            corpus=corpus,
            part=part,
        )
    if item.kind == "lhotse_cut":
        cut = _obj(item.text)
        if cut is None:
            raise BundleError("malformed_json", f"cut line {item.line} is not a JSON object in UTF-8")
        return _cut_conversation(cut, base=base, origin=item.origin, corpus=corpus, part=part)
    raise BundleError("unknown_input", f"unknown Lhotse input kind {item.kind!r}")


def _corpus_part(path: str) -> tuple[str, str]:
    match = _MANIFEST.match(posixpath.basename(path))
    return (match["corpus"] or "cuts", match["part"] or "") if match else ("unknown", "")


def _number(obj: Mapping, key: str, what: str, kind: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        if kind == "lhotse_bad_cut":
            raise BundleError("lhotse_bad_cut", f"{what}: {key!r} must be a non-negative number, got {value!r:.40}")
        if kind == "lhotse_bad_recording":
            raise BundleError(
                "lhotse_bad_recording", f"{what}: {key!r} must be a non-negative number, got {value!r:.40}"
            )
        raise BundleError("lhotse_bad_supervision", f"{what}: {key!r} must be a non-negative number, got {value!r:.40}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Recording:
    id: str
    files: Mapping[int, tuple[str, int]]  # recording channel -> (file path, channel index in that file)
    duration_s: float


def _join(base: str, path: str) -> str:
    if "://" in path or path.startswith("/") or not base:
        return path
    if "://" in base:
        return base.rstrip("/") + "/" + path
    return posixpath.normpath(posixpath.join(base, path))


def _recording(obj: Any, base: str) -> _Recording:
    """A Lhotse Recording dict: id, sources of type "file", sampling_rate, duration; no transforms."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
        raise BundleError("lhotse_bad_recording", "recording is not an object with a string 'id'")
    what = f"recording {obj['id']!r}"
    duration = _number(obj, "duration", what, "lhotse_bad_recording")
    _number(obj, "sampling_rate", what, "lhotse_bad_recording")
    if obj.get("transforms"):
        raise BundleError(
            "lhotse_bad_recording", f"{what} has transforms (speed/volume/reverb ...): only untransformed audio is read"
        )
    sources = obj.get("sources")
    if not isinstance(sources, list) or not sources:
        raise BundleError("lhotse_bad_recording", f"{what} has no 'sources' list")
    files: dict[int, tuple[str, int]] = {}
    for k, src in enumerate(sources):
        if (
            not isinstance(src, Mapping)
            or src.get("type") not in ("file", "url")
            or not isinstance(src.get("source"), str)
        ):
            kind = src.get("type") if isinstance(src, Mapping) else src
            raise BundleError(
                "lhotse_bad_recording",
                f"{what} source #{k} is not a file or url source with a path (type {kind!r:.40})",
            )
        channels = src.get("channels")
        if not isinstance(channels, list) or not channels or not all(_is_channel(c) for c in channels):
            raise BundleError("lhotse_bad_recording", f"{what} source #{k} 'channels' is not a list of channel numbers")
        for index, channel in enumerate(channels):
            if channel in files:
                raise BundleError("lhotse_bad_recording", f"{what}: channel {channel} is in two sources")
            files[channel] = (_join(base, src["source"]), index)
    return _Recording(id=obj["id"], files=files, duration_s=duration)


def _is_channel(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Supervision:
    start_s: float  # in the reference of its manifest (recording, or cut)
    end_s: float
    channels: tuple[int, ...]
    speaker: str
    text: str
    language: str | None
    words: tuple[tuple[str, float, float, float | None], ...] | None  # (symbol, start_s, end_s, score), recording time


def _supervision(obj: Any, what: str, *, allow_negative_start: bool = False) -> _Supervision:
    """A Lhotse SupervisionSegment dict: start, duration, channel, speaker; optional text, language, alignment."""
    if not isinstance(obj, Mapping):
        raise BundleError("lhotse_bad_supervision", f"{what} is not an object")
    if isinstance(obj.get("id"), str):
        what = f"{what} ({obj['id']!r:.60})"
    start = obj.get("start")
    if allow_negative_start and isinstance(start, (int, float)) and not isinstance(start, bool) and start < 0:
        start = float(start)
        if not math.isfinite(start):
            raise BundleError("lhotse_bad_supervision", f"{what}: 'start' is not finite")
    else:
        start = _number(obj, "start", what, "lhotse_bad_supervision")
    duration = _number(obj, "duration", what, "lhotse_bad_supervision")
    speaker = obj.get("speaker")
    if not isinstance(speaker, str) or not speaker:
        raise BundleError("lhotse_bad_supervision", f"{what} has no 'speaker': tracks are named by speaker")
    channel = obj.get("channel", 0)
    channels = tuple(channel) if isinstance(channel, list) else (channel,)
    if not channels or not all(_is_channel(c) for c in channels):
        raise BundleError("lhotse_bad_supervision", f"{what}: 'channel' must be a channel number or a list of them")
    text = obj.get("text") or ""
    language = obj.get("language")
    if not isinstance(text, str) or not (language is None or isinstance(language, str)):
        raise BundleError("lhotse_bad_supervision", f"{what}: 'text' and 'language' must be strings")
    words = None
    alignment = obj.get("alignment")
    if alignment is not None:
        if not isinstance(alignment, Mapping):
            raise BundleError("lhotse_bad_supervision", f"{what}: 'alignment' must be an object of lists")
        if "word" in alignment:
            words = tuple(_alignment_item(item, f"{what} word #{k}") for k, item in enumerate(alignment["word"] or []))
    return _Supervision(
        start_s=start,
        end_s=start + duration,
        channels=tuple(sorted(set(channels))),
        speaker=speaker,
        text=text,
        language=language,
        words=words,
    )


def _alignment_item(item: Any, what: str) -> tuple[str, float, float, float | None]:
    """Lhotse's AlignmentItem: serialised as [symbol, start, duration, score]; an object with those keys is read too."""
    if isinstance(item, Mapping):
        item = [item.get("symbol"), item.get("start"), item.get("duration"), item.get("score")]
    if not isinstance(item, list) or len(item) not in (3, 4) or not isinstance(item[0], str):
        raise BundleError("bad_word", f"{what} is not [symbol, start, duration, score]: {item!r:.80}")
    values = dict(zip(("start", "duration", "score"), item[1:], strict=False))
    start, duration = (_number(values, k, what, "lhotse_bad_supervision") for k in ("start", "duration"))
    score = None if values.get("score") is None else _number(values, "score", what, "lhotse_bad_supervision")
    return item[0], start, start + duration, score


def _tracks(
    rec: _Recording, sups: list[_Supervision], channels: tuple[int, ...] | None, what: str
) -> tuple[Track, ...]:
    """Tracks from the speakers' channels: one per speaker (each on its own single channel), or one mixed track."""
    usable = tuple(sorted(rec.files)) if channels is None else channels
    for ch in {c for s in sups for c in s.channels}:
        if ch not in usable:
            raise BundleError(
                "lhotse_channel_map",
                f"{what}: a supervision is on channel {ch}, but the audio has channels {list(usable)}",
            )
    by_speaker: dict[str, set[tuple[int, ...]]] = defaultdict(set)
    for s in sups:
        by_speaker[s.speaker].add(s.channels)
    used = {c for cs in by_speaker.values() for c in cs}
    if len(used) == 1:  # everyone on the same channel(s): one mixed track
        (chans,) = used
        paths = {rec.files[c][0] for c in chans}
        if len(chans) == 1:
            path, index = rec.files[chans[0]]
            return (Track(speaker=None, path=path, channel=index),)
        if len(paths) == 1 and len(chans) == sum(p == next(iter(paths)) for p, _ in rec.files.values()):
            return (Track(speaker=None, path=next(iter(paths)), channel=None),)  # every channel of one file: their mean
        raise BundleError("lhotse_channel_map", f"{what}: supervisions span channels {list(chans)} of several files")
    own = {}
    for speaker, chans in sorted(by_speaker.items()):
        if len(chans) != 1 or len(next(iter(chans))) != 1:
            raise BundleError(
                "lhotse_channel_map",
                f"{what}: speaker {speaker!r} is on channels {sorted(chans)}; each needs a channel of their own",
            )
        own[speaker] = next(iter(chans))[0]
    if len(set(own.values())) != len(own):
        raise BundleError("lhotse_channel_map", f"{what}: speakers share channels ({own}) while others have their own")
    return tuple(Track(speaker=sp, path=rec.files[ch][0], channel=rec.files[ch][1]) for sp, ch in own.items())


def _conversation(
    rec: _Recording,
    sups: list[_Supervision],
    *,
    conv_id: str,
    offset_s: float,
    duration_s: float | None,
    channels: tuple[int, ...] | None,
    origin: str,
    corpus: str,
    part: str,
) -> Conversation:
    """The conversation of a recording's stretch [offset_s, offset_s + duration_s) (None: to its end); supervision
    times are relative to `offset_s`, word alignments in recording time."""
    what = f"recording {rec.id!r}" if conv_id == rec.id else f"cut {conv_id!r}"
    if not sups:
        raise BundleError("lhotse_no_supervisions", f"{what} has no supervisions: nothing names its speakers")
    tracks = _tracks(rec, sups, channels, what)
    tracks = tuple(
        Track(speaker=t.speaker, path=t.path, channel=t.channel, start_s=offset_s, duration_s=duration_s)
        for t in tracks
    )
    end = duration_s if duration_s is not None else math.inf
    segments = tuple(
        sorted(
            (Segment(start_s=max(0.0, s.start_s), end_s=min(s.end_s, end), speaker=s.speaker) for s in sups),
            key=lambda g: (g.start_s, g.end_s, g.speaker),
        )
    )
    segments = tuple(g for g in segments if g.end_s > g.start_s)
    with_text = [s for s in sups if s.text.strip() or s.words]
    words = texts = None
    if with_text and all(s.words is not None for s in with_text):
        found = [
            Word(text=sym, start_s=a - offset_s, end_s=b - offset_s, speaker=s.speaker, score=score, source="aligned")
            for s in with_text
            for sym, a, b, score in s.words
            if a - offset_s >= 0 and b - offset_s <= end
        ]
        words = tuple(sorted(found, key=lambda w: (w.start_s, w.end_s, w.speaker)))
    elif with_text:
        if any(s.words is not None for s in with_text):
            raise BundleError(
                "lhotse_bad_supervision",
                f"{what}: some supervisions have word alignments and others only text; give all or none",
            )
        by_speaker: dict[str, list[_Supervision]] = defaultdict(list)
        for s in sorted(with_text, key=lambda s: (s.start_s, s.end_s)):
            by_speaker[s.speaker].append(s)
        # a line per supervision: the aligner keeps utterances apart (pipeline.aligners.tokenize_lines)
        texts = {
            sp: "\n".join(" ".join(s.text.split()) for s in ss if s.text.strip())
            for sp, ss in sorted(by_speaker.items())
        }
    language = next((s.language for s in sups if s.language), None)
    return Conversation(
        id=conv_id,
        origin=origin,
        tracks=tracks,
        words=words,
        segments=segments,
        texts=texts,
        language=_language(language),
        source=f"lhotse:{corpus}",
        split=part if part in SPLIT_PARTS else "train",
    )


def _language(name: str | None) -> str:
    """Lhotse recipes write language names ("English"); the bundle's language is a code when one is known."""
    if not name:
        return "und"
    return {"english": "en", "spanish": "es", "mandarin": "zh", "german": "de", "french": "fr"}.get(name.lower(), name)


def _cut_conversation(cut: Mapping, *, base: str, origin: str, corpus: str, part: str) -> Conversation:
    """A MonoCut or MultiCut dict (id, start, duration, channel, supervisions, recording)."""
    cut_id = cut.get("id")
    if not isinstance(cut_id, str) or cut.get("type", "MonoCut") not in ("MonoCut", "MultiCut"):
        raise BundleError(
            "lhotse_bad_cut",
            f"cut {cut_id!r:.60} is not a MonoCut or MultiCut with a string id (type {cut.get('type')!r:.40})",
        )
    what = f"cut {cut_id!r}"
    if "recording" not in cut:
        raise BundleError("lhotse_bad_cut", f"{what} has no 'recording' (feature-only cuts have no audio to read)")
    rec = _recording(cut["recording"], base)
    start = _number(cut, "start", what, "lhotse_bad_cut")
    duration = _number(cut, "duration", what, "lhotse_bad_cut")
    if duration <= 0 or start + duration > rec.duration_s + 1e-3:
        raise BundleError(
            "lhotse_bad_cut",
            f"{what} covers [{start}, {start + duration}) s of a recording {rec.duration_s} s long",
        )
    channel = cut.get("channel", 0)
    channels = tuple(channel) if isinstance(channel, list) else (channel,)
    if not channels or not all(_is_channel(c) for c in channels):
        raise BundleError("lhotse_bad_cut", f"{what}: 'channel' must be a channel number or a list of them")
    raw = cut.get("supervisions", [])
    if not isinstance(raw, list):
        raise BundleError("lhotse_bad_cut", f"{what}: 'supervisions' must be a list")
    sups = [_supervision(s, f"{what} supervision #{k}", allow_negative_start=True) for k, s in enumerate(raw)]
    return _conversation(
        rec,
        sups,
        conv_id=cut_id,
        offset_s=start,
        duration_s=duration,
        channels=tuple(sorted(set(channels))),
        origin=origin,
        corpus=corpus,
        part=part,
    )
