"""Cut a labelled conversation into fixed-length windows: the samples that go into shards (format 3).

    python -c "from pipeline.windows import WindowConfig; print(WindowConfig())"

A perspective is one speaker playing the model (`output`); the most talkative other party is the user (`input`),
the rest are mixed into `others`. A window stores each speaker's streams once and each perspective's labels
(schemas/sample.py WindowSample); the loader picks the perspective. Windows are `window_microturns` long (default
150 = 30 s); the last one is padded with masked micro-turns so every sample has the same shapes.

Everything a window holds arrives computed for the whole conversation: the perspectives (pipeline/speakers.py
perspective_roles), the dMel codes, speech activity and others mixes (the featurise stage, pipeline/features.py),
the labels, floor, interruptions and timeline events of each perspective (the label stage, pipeline/labels.py).
This stage slices them into windows, places the words and encodes the records.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.align import AlignedConversation
from pipeline.event_windows import window_events
from pipeline.features import OthersMix
from pipeline.labels import LabelledConversation, PerspectiveLabels
from pipeline.targets import window_targets
from schemas.bundle import Word, sanitise_id
from schemas.config_flags import setting
from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN
from schemas.grid import word_microturn
from schemas.sample import (
    LABEL_BITS,
    MicroTurnSample,
    SampleVideo,
    WindowAnnotation,
    WindowMeta,
    WindowPerspective,
    WindowSample,
    WindowWord,
)
from schemas.shard import FORMAT_VERSION, sample_key
from schemas.tables import LABEL_COUNT_COLUMNS, event_counts
from schemas.units import (
    SAMPLE_RATE_HZ,
    SAMPLES_PER_MICROTURN,
    num_microturns,
    seconds_to_samples,
)

PERSPECTIVES = ("all", "first")  # who plays the model: every allowed speaker once, or only the first


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    window_microturns: int = setting(150, "micro-turns per sample; one micro-turn is 200 ms, 150 = 30 s")
    # Applied by the featurise stage, which decides the perspectives (pipeline/features.py featurise): the windows get
    # them made.
    perspectives: str = setting(
        "all",
        "all: every speaker (allowed by the bundle's model_speakers) plays the model once; first: only the first one",
        choices=PERSPECTIVES,
    )
    keep_audio: bool = setting(False, "also store each sample's 16 kHz audio per stream as FLAC members")

    def __post_init__(self) -> None:
        if self.window_microturns < 1:
            raise ValueError(f"window_microturns must be >= 1, got {self.window_microturns}")
        if self.perspectives not in PERSPECTIVES:
            raise ValueError(f"perspectives must be 'all' or 'first', got {self.perspectives!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One shard sample: its key, encoded members ({extension: bytes}) and its index rows, one per perspective
    (without shard/offset)."""

    key: str
    members: Mapping[str, bytes]
    rows: tuple[Mapping[str, object], ...]


def _window(array: np.ndarray, start: int, stop: int, length: int) -> np.ndarray:
    part = array[start:stop]
    if len(part) == length:
        return part
    pad = np.zeros((length - len(part), *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([part, pad])


@dataclass(frozen=True, slots=True, kw_only=True)
class _PlacedWords:
    """The words of the stored streams with both placements, in time order, and sorted by each placement so a
    window's words are two bisections away."""

    placed: tuple[tuple[int, int, Word], ...]  # (heard micro-turn, spoken micro-turn, word), conversation micro-turns
    by_heard: tuple[int, ...]  # indices into `placed`, by heard micro-turn
    heard_mt: tuple[int, ...]  # the heard micro-turn of each of `by_heard`
    by_spoken: tuple[int, ...]  # indices into `placed` of the model speakers' words, by spoken micro-turn
    spoken_mt: tuple[int, ...]  # the spoken micro-turn of each of `by_spoken`

    def between(self, first: int, stop: int) -> list[tuple[int, int, Word]]:
        """The words heard or spoken in conversation micro-turns [first, stop), in time order."""
        chosen = sorted(
            {self.by_heard[i] for i in range(bisect_left(self.heard_mt, first), bisect_left(self.heard_mt, stop))}
            | {self.by_spoken[i] for i in range(bisect_left(self.spoken_mt, first), bisect_left(self.spoken_mt, stop))}
        )
        return [self.placed[i] for i in chosen]


@dataclass(frozen=True, slots=True, kw_only=True)
class _ConversationCut:
    """What every window of one conversation reads, computed once per conversation."""

    labelled: LabelledConversation
    aligned: AlignedConversation  # labelled.featurised.aligned
    config: WindowConfig
    num_microturns: int  # K: the conversation's micro-turns (200 ms), the last one possibly partial
    key: str  # the conversation's key-safe id
    speakers: tuple[str, ...]  # stored speaker rows, in the conversation's speaker order
    perspectives: tuple[PerspectiveLabels, ...]  # in output_speakers order (pipeline/speakers.py)
    others_rows: tuple[int | None, ...]  # per perspective: its row in `others`; None without others
    others: tuple[OthersMix, ...]  # the others mix of each perspective that has one, in perspective order
    words: _PlacedWords
    in_streams: frozenset[str]  # speakers heard or speaking in some perspective
    dmel: tuple[np.ndarray, ...]  # per stored speaker, uint8 (K, 16, 80)
    others_dmel: tuple[np.ndarray, ...]  # per row of `others`, uint8 (K, 16, 80)
    activity: np.ndarray  # float32 (K, S): speech fraction per micro-turn and stored speaker


def _place_words(
    words: Sequence[Word], *, in_streams: frozenset[str], outputs: frozenset[str], num_microturns: int
) -> _PlacedWords:
    """The words of `in_streams` placed on the conversation's `num_microturns` micro-turns (200 ms), both ways;
    only the words of `outputs` (speakers playing the model) are looked up by their spoken micro-turn."""
    placed = sorted(
        (
            (
                word_microturn(w, is_output=False, num_microturns=num_microturns),
                word_microturn(w, is_output=True, num_microturns=num_microturns),
                w,
            )
            for w in words
            if w.speaker in in_streams
        ),
        key=lambda item: (item[2].start_s, item[2].end_s, item[2].speaker, item[2].text),
    )
    by_heard = sorted(range(len(placed)), key=lambda i: placed[i][0])
    by_spoken = sorted((i for i in range(len(placed)) if placed[i][2].speaker in outputs), key=lambda i: placed[i][1])
    return _PlacedWords(
        placed=tuple(placed),
        by_heard=tuple(by_heard),
        heard_mt=tuple(placed[i][0] for i in by_heard),
        by_spoken=tuple(by_spoken),
        spoken_mt=tuple(placed[i][1] for i in by_spoken),
    )


def _prepare(labelled: LabelledConversation, config: WindowConfig) -> _ConversationCut:
    """The conversation-wide part of cut_windows: the stored rows, the others rows and the placed words."""
    featurised = labelled.featurised
    aligned = featurised.aligned
    conv = aligned.conversation
    k_total = num_microturns(aligned.num_samples)
    roles = featurised.roles
    used = {s for r in roles for s in (r.output, r.user)}
    speakers = tuple(s for s in aligned.speech if s in used)  # stored rows, in the conversation's speaker order
    others = tuple(mix for mix in featurised.others if mix is not None)
    rows = iter(range(len(others)))
    outputs = frozenset(r.output for r in roles)
    in_streams = frozenset({s for r in roles for s in (r.user, *r.others)} | outputs)
    return _ConversationCut(
        labelled=labelled,
        aligned=aligned,
        config=config,
        num_microturns=k_total,
        key=sanitise_id(conv.id),
        speakers=speakers,
        perspectives=labelled.perspectives,
        others_rows=tuple(None if mix is None else next(rows) for mix in featurised.others),
        others=others,
        words=_place_words(conv.words or (), in_streams=in_streams, outputs=outputs, num_microturns=k_total),
        in_streams=in_streams,
        dmel=tuple(featurised.dmel[s].reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS) for s in speakers),
        others_dmel=tuple(mix.dmel.reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS) for mix in others),
        activity=np.stack([featurised.activity[s] for s in speakers], axis=1),
    )


def _window_words(cut: _ConversationCut, first: int, stop: int) -> tuple[WindowWord, ...]:
    """The words of conversation micro-turns [first, stop): times in seconds from the window's start, placements
    in window micro-turns."""
    t0 = first * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
    return tuple(
        WindowWord(
            text=w.text,
            speaker=w.speaker,
            start_s=round(w.start_s - t0, 6),
            end_s=round(w.end_s - t0, 6),
            heard_microturn=heard - first,
            spoken_microturn=spoken - first,
            source=w.source,
            score=w.score,
        )
        for heard, spoken, w in cut.words.between(first, stop)
    )


def _window_annotations(cut: _ConversationCut, first: int, stop: int) -> tuple[WindowAnnotation, ...]:
    """The annotations overlapping conversation micro-turns [first, stop): micro-turns relative to the window
    (clamped to it), times in seconds from the window's start."""
    k_total = cut.num_microturns
    t0 = first * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
    t1 = stop * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
    return tuple(
        WindowAnnotation(
            label=an.label,
            speaker=an.speaker,
            start_microturn=max(0, min(seconds_to_samples(an.start_s) // SAMPLES_PER_MICROTURN, k_total - 1) - first),
            end_microturn=min(stop, -(-seconds_to_samples(an.end_s) // SAMPLES_PER_MICROTURN)) - first,
            start_s=round(an.start_s - t0, 6),
            end_s=round(an.end_s - t0, 6),
        )
        for an in cut.aligned.conversation.annotations
        if an.speaker in cut.in_streams and an.start_s < t1 and an.end_s > t0
    )


def _window_meta(cut: _ConversationCut, window: int, first: int, stop: int) -> WindowMeta:
    """meta.json of window number `window`, conversation micro-turns [first, stop)."""
    aligned = cut.aligned
    conv = aligned.conversation
    num_samples = aligned.num_samples
    valid_samples = min(num_samples, stop * SAMPLES_PER_MICROTURN) - first * SAMPLES_PER_MICROTURN
    row = {s: i for i, s in enumerate(cut.speakers)}
    return WindowMeta(
        format_version=FORMAT_VERSION,
        key=sample_key(cut.key, window),
        conversation_id=conv.id,
        conversation_key=cut.key,
        window=window,
        start_microturn=first,
        num_microturns=stop - first,
        window_microturns=cut.config.window_microturns,
        last_valid_samples=valid_samples - (stop - first - 1) * SAMPLES_PER_MICROTURN,
        conversation_samples=num_samples,
        speakers=cut.speakers,
        perspectives=tuple(
            WindowPerspective(
                perspective=sanitise_id(x.roles.output),
                input=row[x.roles.user],
                output=row[x.roles.output],
                others=x.roles.others,
                others_row=others_row,
                interruptions=tuple(
                    replace(i, microturn=i.microturn - first) for i in x.interruptions if first <= i.microturn < stop
                ),
            )
            for x, others_row in zip(cut.perspectives, cut.others_rows, strict=True)
        ),
        language=conv.language,
        source=conv.source,
        licence=conv.licence,
        split=conv.split,
        tags=dict(conv.tags),
        video=None
        if aligned.video is None
        else SampleVideo(
            frames=sum(aligned.video.jpegs.present()[first:stop]),
            audio_video_offset_s=aligned.video.info["audio_video_offset_s"],
        ),
    )


def _window_audio(cut: _ConversationCut, first: int, stop: int) -> dict[str, np.ndarray] | None:
    """With keep_audio, the window's 16 kHz float32 samples per stored speaker (`s<row>`) and others mix
    (`o<row>`), zero-padded to window_microturns * 3,200 samples; else None."""
    if not cut.config.keep_audio:
        return None
    streams = cut.aligned.streams
    length = cut.config.window_microturns * SAMPLES_PER_MICROTURN
    audio = {}
    for name, pcm in [*((f"s{i}", streams[s]) for i, s in enumerate(cut.speakers))] + [
        (f"o{r}", mix.pcm) for r, mix in enumerate(cut.others)
    ]:
        chunk = pcm[first * SAMPLES_PER_MICROTURN : stop * SAMPLES_PER_MICROTURN]
        audio[name] = _window(chunk, 0, len(chunk), length)
    return audio


def _window_sample(cut: _ConversationCut, window: int) -> Sample:
    """Window number `window` of the conversation: its record encoded as shard members, and its index rows."""
    w_len = cut.config.window_microturns
    k_total = cut.num_microturns
    a, b = window * w_len, min((window + 1) * w_len, k_total)
    aligned = cut.aligned
    conv = aligned.conversation
    perspectives, others = cut.perspectives, cut.others
    mask = np.zeros(w_len, dtype=np.uint8)
    mask[: b - a] = 1
    events = [window_events(x.events, a, b) for x in perspectives]
    record = WindowSample(
        meta=_window_meta(cut, window, a, b),
        dmel=np.stack([_window(d, a, b, w_len) for d in cut.dmel]),
        others_dmel=np.stack([_window(d, a, b, w_len) for d in cut.others_dmel]) if others else None,
        activity=_window(cut.activity, a, b, w_len),
        others_activity=np.stack([_window(x.activity, a, b, w_len) for x in others]) if others else None,
        labels=np.stack([_window(x.labels, a, b, w_len) for x in perspectives]),
        floor=np.stack([_window(x.floor, a, b, w_len) for x in perspectives]),
        mask=mask,
        words=_window_words(cut, a, b),
        annotations=_window_annotations(cut, a, b),
        frames=None if aligned.video is None else tuple(aligned.video.jpegs[a:b]) + (None,) * (w_len - (b - a)),
        audio=_window_audio(cut, a, b),
        targets=tuple(
            window_targets(conv.targets, output_speaker=x.roles.output, first=a, stop=b, total=k_total)
            for x in perspectives
        )
        if conv.targets
        else None,
        events=None if all(e is None for e in events) else tuple(events),
    )
    valid_samples = min(aligned.num_samples, b * SAMPLES_PER_MICROTURN) - a * SAMPLES_PER_MICROTURN
    rows = tuple(_row(record.view(p), valid_samples) for p in range(len(perspectives)))
    return Sample(key=record.meta.key, members=record.to_members(), rows=rows)


def cut_windows(labelled: LabelledConversation, config: WindowConfig) -> Iterator[Sample]:
    """Every sample of the conversation, windows in time order: each window holds every speaker's streams once and
    the per-perspective labels (perspectives in speaker order); its index rows are one per perspective."""
    cut = _prepare(labelled, config)
    for window in range(-(-cut.num_microturns // config.window_microturns)):
        yield _window_sample(cut, window)


def _row(record: MicroTurnSample, valid_samples: int) -> dict:
    """The sample's index row (schemas.tables.INDEX_SCHEMA) without shard and offset."""
    meta = record.meta
    labels = record.labels[: meta.num_microturns]
    speech_in = (labels & LABEL_BITS["input_speech"]) > 0
    speech_out = (labels & LABEL_BITS["output_speech"]) > 0
    counts = {
        "n_input_speech": speech_in.sum(),
        "n_output_speech": speech_out.sum(),
        "n_overlap": (speech_in & speech_out).sum(),
        "n_silence": (~speech_in & ~speech_out).sum(),
        **{
            f"n_{name}": ((labels & LABEL_BITS[name]) > 0).sum()
            for name in (
                "backchannel",
                "interruption",
                "yield_to_input",
                "yield_to_output",
                "output_backchannel",
                "output_interruption",
            )
        },
    }
    assert set(counts) == set(LABEL_COUNT_COLUMNS)
    return {
        "key": meta.key,
        "conversation_id": meta.conversation_id,
        "perspective": meta.perspective,
        "window": meta.window,
        "start_microturn": meta.start_microturn,
        "num_microturns": meta.num_microturns,
        "duration_s": valid_samples / SAMPLE_RATE_HZ,
        "output_speaker": meta.speakers.output,
        "input_speaker": meta.speakers.input,
        "other_speakers": list(meta.speakers.others),
        "word_count": len(record.words),
        **{k: int(v) for k, v in counts.items()},
        "language": meta.language,
        "source": meta.source,
        "licence": meta.licence,
        "split": meta.split,
        "tags": dict(meta.tags),
        "annotations": sorted({a.label for a in record.annotations}),
        "n_targets": len(record.targets or ()),
        "target_categories": sorted({t.category for t in record.targets or ()}),
        "target_counts": dict(sorted(Counter(t.category for t in record.targets or ()).items())),
        **event_counts(record.events),
    }
