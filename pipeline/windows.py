"""Cut a labelled conversation into fixed-length windows: the samples that go into shards (format 3).

    python -c "from pipeline.windows import WindowConfig; print(WindowConfig())"

A perspective is one speaker playing the model (`output`); the most talkative other party is the user (`input`),
the rest are mixed into `others`. A window stores each speaker's streams once and each perspective's labels
(schemas/sample.py WindowSample); the loader picks the perspective. Windows are `window_microturns` long (default
150 = 30 s); the last one is padded with masked micro-turns so every sample has the same shapes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.align import AlignedConversation
from pipeline.event_windows import perspective_events, window_events
from pipeline.features import dmel_codes
from pipeline.labels import Event, perspective_interruptions, perspective_labels
from pipeline.speakers import input_roles
from pipeline.targets import window_targets
from schemas.bundle import sanitise_id
from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN
from schemas.grid import activity, merge, word_microturn
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


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    window_microturns: int = 150  # micro-turns per sample (150 x 200 ms = 30 s)
    perspectives: str = "all"  # all: every speaker allowed to be the model; first: only the first of them
    keep_audio: bool = False  # also store each window's 16 kHz audio per stream as FLAC

    def __post_init__(self) -> None:
        if self.window_microturns < 1:
            raise ValueError(f"window_microturns must be >= 1, got {self.window_microturns}")
        if self.perspectives not in ("all", "first"):
            raise ValueError(f"perspectives must be 'all' or 'first', got {self.perspectives!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeaturisedConversation:
    """An aligned conversation with the dMel codes of each of its streams (the Featurise stage's output)."""

    aligned: AlignedConversation
    dmel: Mapping[str, np.ndarray]  # per speaker, uint8 (K*16, 80)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledConversation:
    aligned: AlignedConversation
    dmel: Mapping[str, np.ndarray]  # per speaker, uint8 (K*16, 80)
    events: Sequence[Event]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One shard sample: its key, encoded members ({extension: bytes}) and its index rows, one per perspective
    (without shard/offset)."""

    key: str
    members: Mapping[str, bytes]
    rows: tuple[Mapping[str, object], ...]


def output_speakers(labelled: LabelledConversation, config: WindowConfig) -> list[str]:
    conv = labelled.aligned.conversation
    allowed = [s for s in (conv.model_speakers or conv.speakers) if s in conv.speakers]
    return allowed[:1] if config.perspectives == "first" else allowed


def _window(array: np.ndarray, start: int, stop: int, length: int) -> np.ndarray:
    part = array[start:stop]
    if len(part) == length:
        return part
    pad = np.zeros((length - len(part), *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([part, pad])


def cut_windows(labelled: LabelledConversation, config: WindowConfig) -> Iterator[Sample]:
    """Every sample of the conversation, windows in time order: each window holds every speaker's streams once and
    the per-perspective labels (perspectives in speaker order); its index rows are one per perspective."""
    aligned = labelled.aligned
    conv = aligned.conversation
    k_total = num_microturns(aligned.num_samples)
    w_len = config.window_microturns
    conv_key = sanitise_id(conv.id)
    act = {s: activity(iv, k_total) for s, iv in aligned.speech.items()}
    roles = []  # per perspective: (output, user, others)
    for output in output_speakers(labelled, config):
        user, others = input_roles(output, aligned.speech)
        assert user is not None  # align() guarantees two speakers
        roles.append((output, user, tuple(others)))
    used = {s for output, user, _ in roles for s in (output, user)}
    speakers = [s for s in aligned.speech if s in used]  # stored rows, in the conversation's speaker order
    row = {s: i for i, s in enumerate(speakers)}
    perspectives, others_dmel, others_act, others_pcm = [], [], [], []
    for output, user, others in roles:
        input_side = merge([iv for s in (user, *others) for iv in aligned.speech[s]])
        labels, floor = perspective_labels(
            labelled.events,
            output_speaker=output,
            input_activity=activity(input_side, k_total),
            output_activity=act[output],
        )
        others_row = None
        if others:
            others_row = len(others_dmel)
            mix = np.sum([aligned.streams[s] for s in others], axis=0, dtype=np.float32)
            others_dmel.append(dmel_codes(mix).reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS))
            others_act.append(activity(merge([iv for s in others for iv in aligned.speech[s]]), k_total))
            others_pcm.append(mix)
        perspectives.append(
            {
                "output": output,
                "user": user,
                "others": others,
                "others_row": others_row,
                "labels": labels,
                "floor": floor,
                "interruptions": perspective_interruptions(
                    labelled.events, output_speaker=output, num_microturns=k_total
                ),
                "events": perspective_events(conv, output, k_total),
            }
        )
    outputs = {output for output, _, _ in roles}
    in_streams = {s for _, user, others in roles for s in (user, *others)} | outputs
    placed = sorted(
        (
            (
                word_microturn(w, is_output=False, num_microturns=k_total),
                word_microturn(w, is_output=True, num_microturns=k_total),
                w,
            )
            for w in conv.words or ()
            if w.speaker in in_streams
        ),
        key=lambda item: (item[2].start_s, item[2].end_s, item[2].speaker, item[2].text),
    )
    by_heard = sorted(range(len(placed)), key=lambda i: placed[i][0])
    heard_mt = [placed[i][0] for i in by_heard]
    by_spoken = sorted((i for i in range(len(placed)) if placed[i][2].speaker in outputs), key=lambda i: placed[i][1])
    spoken_mt = [placed[i][1] for i in by_spoken]
    dmel = [labelled.dmel[s].reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS) for s in speakers]
    act_rows = np.stack([act[s] for s in speakers], axis=1)  # (K, S)
    for window in range(-(-k_total // w_len)):
        a, b = window * w_len, min((window + 1) * w_len, k_total)
        t0 = a * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
        chosen = sorted(
            {by_heard[i] for i in range(bisect_left(heard_mt, a), bisect_left(heard_mt, b))}
            | {by_spoken[i] for i in range(bisect_left(spoken_mt, a), bisect_left(spoken_mt, b))}
        )
        words = tuple(
            WindowWord(
                text=w.text,
                speaker=w.speaker,
                start_s=round(w.start_s - t0, 6),
                end_s=round(w.end_s - t0, 6),
                heard_microturn=heard - a,
                spoken_microturn=spoken - a,
                source=w.source,
                score=w.score,
            )
            for heard, spoken, w in (placed[i] for i in chosen)
        )
        t1 = b * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
        spans = tuple(
            WindowAnnotation(
                label=an.label,
                speaker=an.speaker,
                start_microturn=max(0, min(seconds_to_samples(an.start_s) // SAMPLES_PER_MICROTURN, k_total - 1) - a),
                end_microturn=min(b, -(-seconds_to_samples(an.end_s) // SAMPLES_PER_MICROTURN)) - a,
                start_s=round(an.start_s - t0, 6),
                end_s=round(an.end_s - t0, 6),
            )
            for an in conv.annotations
            if an.speaker in in_streams and an.start_s < t1 and an.end_s > t0
        )
        key = sample_key(conv_key, window)
        valid_samples = min(aligned.num_samples, b * SAMPLES_PER_MICROTURN) - a * SAMPLES_PER_MICROTURN
        last_valid = valid_samples - (b - a - 1) * SAMPLES_PER_MICROTURN
        meta = WindowMeta(
            format_version=FORMAT_VERSION,
            key=key,
            conversation_id=conv.id,
            conversation_key=conv_key,
            window=window,
            start_microturn=a,
            num_microturns=b - a,
            window_microturns=w_len,
            last_valid_samples=last_valid,
            conversation_samples=aligned.num_samples,
            speakers=tuple(speakers),
            perspectives=tuple(
                WindowPerspective(
                    perspective=sanitise_id(x["output"]),
                    input=row[x["user"]],
                    output=row[x["output"]],
                    others=x["others"],
                    others_row=x["others_row"],
                    interruptions=tuple(
                        replace(i, microturn=i.microturn - a) for i in x["interruptions"] if a <= i.microturn < b
                    ),
                )
                for x in perspectives
            ),
            language=conv.language,
            source=conv.source,
            licence=conv.licence,
            split=conv.split,
            tags=dict(conv.tags),
            video=None
            if aligned.video is None
            else SampleVideo(
                frames=sum(aligned.video.jpegs.present()[a:b]),
                audio_video_offset_s=aligned.video.info["audio_video_offset_s"],
            ),
        )
        mask = np.zeros(w_len, dtype=np.uint8)
        mask[: b - a] = 1
        audio = None
        if config.keep_audio:
            audio = {}
            for name, pcm in [*((f"s{i}", aligned.streams[s]) for i, s in enumerate(speakers))] + [
                (f"o{r}", mix) for r, mix in enumerate(others_pcm)
            ]:
                chunk = pcm[a * SAMPLES_PER_MICROTURN : b * SAMPLES_PER_MICROTURN]
                audio[name] = _window(chunk, 0, len(chunk), w_len * SAMPLES_PER_MICROTURN)
        events = [window_events(x["events"], a, b) for x in perspectives]
        record = WindowSample(
            meta=meta,
            dmel=np.stack([_window(d, a, b, w_len) for d in dmel]),
            others_dmel=np.stack([_window(d, a, b, w_len) for d in others_dmel]) if others_dmel else None,
            activity=_window(act_rows, a, b, w_len),
            others_activity=np.stack([_window(x, a, b, w_len) for x in others_act]) if others_act else None,
            labels=np.stack([_window(x["labels"], a, b, w_len) for x in perspectives]),
            floor=np.stack([_window(x["floor"], a, b, w_len) for x in perspectives]),
            mask=mask,
            words=words,
            annotations=spans,
            frames=None if aligned.video is None else tuple(aligned.video.jpegs[a:b]) + (None,) * (w_len - (b - a)),
            audio=audio,
            targets=tuple(
                window_targets(conv.targets, output_speaker=x["output"], first=a, stop=b, total=k_total)
                for x in perspectives
            )
            if conv.targets
            else None,
            events=None if all(e is None for e in events) else tuple(events),
        )
        rows = tuple(_row(record.view(p), valid_samples) for p in range(len(perspectives)))
        yield Sample(key=key, members=record.to_members(), rows=rows)


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
