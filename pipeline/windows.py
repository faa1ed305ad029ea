"""Cut a labelled conversation into fixed-length windows per perspective: the samples that go into shards.

    python -c "from pipeline.windows import WindowConfig; print(WindowConfig())"

A perspective is one speaker playing the model (`output`); the most talkative other party is the user (`input`),
the rest are mixed into `others`. Windows are `window_microturns` long (default 150 = 30 s); the last one is padded
with masked micro-turns so every sample has the same shapes.
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
from schemas.dmel import FRAMES_PER_MICROTURN
from schemas.grid import activity, merge, word_microturn
from schemas.sample import (
    LABEL_BITS,
    MicroTurnSample,
    SampleAnnotation,
    SampleMeta,
    SampleSpeakers,
    SampleVideo,
    SampleWord,
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
    """One shard sample: its key, encoded members ({extension: bytes}) and its index row (without shard/offset)."""

    key: str
    members: Mapping[str, bytes]
    row: Mapping[str, object]


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
    """Every sample of the conversation: perspectives in speaker order, windows in time order."""
    aligned = labelled.aligned
    conv = aligned.conversation
    k_total = num_microturns(aligned.num_samples)
    w_len = config.window_microturns
    conv_key = sanitise_id(conv.id)
    act = {s: activity(iv, k_total) for s, iv in aligned.speech.items()}
    for output in output_speakers(labelled, config):
        user, others = input_roles(output, aligned.speech)
        assert user is not None  # align() guarantees two speakers
        input_side = merge([iv for s in (user, *others) for iv in aligned.speech[s]])
        labels, floor = perspective_labels(
            labelled.events,
            output_speaker=output,
            input_activity=activity(input_side, k_total),
            output_activity=act[output],
        )
        interruptions = perspective_interruptions(labelled.events, output_speaker=output, num_microturns=k_total)
        others_act = activity(merge([iv for s in others for iv in aligned.speech[s]]), k_total)
        dmel = {"input": labelled.dmel[user], "output": labelled.dmel[output]}
        streams = {"input": aligned.streams[user], "output": aligned.streams[output]}
        if others:
            mix = np.sum([aligned.streams[s] for s in others], axis=0, dtype=np.float32)
            dmel["others"] = dmel_codes(mix)
            streams["others"] = mix
        act_all = np.stack([act[user], others_act, act[output]], axis=1)
        stream_of = {user: "input", output: "output", **{s: "others" for s in others}}
        placed = sorted(
            (
                (word_microturn(w, is_output=stream_of[w.speaker] == "output", num_microturns=k_total), w)
                for w in conv.words or ()
                if w.speaker in stream_of
            ),
            key=lambda item: (item[0], item[1].start_s, item[1].end_s, item[1].speaker, item[1].text),
        )
        placed_mt = [mt for mt, _ in placed]  # sorted: each window takes its slice by bisection
        perspective = sanitise_id(output)
        timed_events = perspective_events(conv, output, k_total)
        for window in range(-(-k_total // w_len)):
            a, b = window * w_len, min((window + 1) * w_len, k_total)
            t0 = a * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
            words = tuple(
                SampleWord(
                    text=w.text,
                    stream=stream_of[w.speaker],
                    speaker=w.speaker,
                    start_s=round(w.start_s - t0, 6),
                    end_s=round(w.end_s - t0, 6),
                    microturn=mt - a,
                    source=w.source,
                    score=w.score,
                )
                for mt, w in placed[bisect_left(placed_mt, a) : bisect_left(placed_mt, b)]
            )
            t1 = b * SAMPLES_PER_MICROTURN / SAMPLE_RATE_HZ
            spans = tuple(
                SampleAnnotation(
                    label=an.label,
                    stream=stream_of[an.speaker],
                    speaker=an.speaker,
                    start_microturn=max(
                        0, min(seconds_to_samples(an.start_s) // SAMPLES_PER_MICROTURN, k_total - 1) - a
                    ),
                    end_microturn=min(b, -(-seconds_to_samples(an.end_s) // SAMPLES_PER_MICROTURN)) - a,
                    start_s=round(an.start_s - t0, 6),
                    end_s=round(an.end_s - t0, 6),
                )
                for an in conv.annotations
                if an.speaker in stream_of and an.start_s < t1 and an.end_s > t0
            )
            key = sample_key(conv_key, perspective, window)
            valid_samples = min(aligned.num_samples, b * SAMPLES_PER_MICROTURN) - a * SAMPLES_PER_MICROTURN
            last_valid = valid_samples - (b - a - 1) * SAMPLES_PER_MICROTURN
            meta = SampleMeta(
                format_version=FORMAT_VERSION,
                key=key,
                conversation_id=conv.id,
                conversation_key=conv_key,
                perspective=perspective,
                window=window,
                start_microturn=a,
                num_microturns=b - a,
                window_microturns=w_len,
                last_valid_samples=last_valid,
                conversation_samples=aligned.num_samples,
                speakers=SampleSpeakers(input=user, others=tuple(others), output=output),
                streams=tuple(sorted(dmel)),
                language=conv.language,
                source=conv.source,
                licence=conv.licence,
                split=conv.split,
                word_sources=dict(sorted(Counter(w.source for w in words).items())),
                tags=dict(conv.tags),
                interruptions=tuple(
                    replace(x, microturn=x.microturn - a) for x in interruptions if a <= x.microturn < b
                ),
                video=None
                if aligned.video is None
                else SampleVideo(
                    frames=sum(aligned.video.jpegs.present()[a:b]),
                    audio_video_offset_s=aligned.video.info["audio_video_offset_s"],
                ),
            )
            mask = np.zeros(w_len, dtype=np.uint8)
            mask[: b - a] = 1
            win_dmel = {
                name: _window(codes.reshape(-1, FRAMES_PER_MICROTURN, codes.shape[-1]), a, b, w_len)
                for name, codes in dmel.items()
            }
            audio = None
            if config.keep_audio:
                audio = {}
                for name, pcm in streams.items():
                    chunk = pcm[a * SAMPLES_PER_MICROTURN : b * SAMPLES_PER_MICROTURN]
                    audio[name] = _window(chunk, 0, len(chunk), w_len * SAMPLES_PER_MICROTURN)
            record = MicroTurnSample(
                meta=meta,
                input_dmel=win_dmel["input"],
                output_dmel=win_dmel["output"],
                others_dmel=win_dmel.get("others"),
                activity=_window(act_all, a, b, w_len),
                labels=_window(labels, a, b, w_len),
                floor=_window(floor, a, b, w_len),
                mask=mask,
                words=words,
                annotations=spans,
                frames=None if aligned.video is None else tuple(aligned.video.jpegs[a:b]) + (None,) * (w_len - (b - a)),
                audio=audio,
                targets=window_targets(conv.targets, output_speaker=output, first=a, stop=b, total=k_total)
                if conv.targets
                else None,
                events=window_events(timed_events, a, b),
            )
            yield Sample(key=key, members=record.to_members(), row=_row(record, valid_samples))


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
