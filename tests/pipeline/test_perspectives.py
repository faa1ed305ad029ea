"""Each perspective made in one place per stage, on a three-party conversation built in memory: the roles decided
once (pipeline/speakers.py), the others mix by the featurise stage (pipeline/features.py), the labels by the label
stage (pipeline/labels.py), and the windows only slicing them (pipeline/windows.py).

.venv/bin/python -m pytest -q tests/pipeline/test_perspectives.py
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.align import AlignedConversation
from pipeline.features import dmel_codes, featurise
from pipeline.labels import LabelConfig, detect_events, ipus, label, perspective_interruptions, perspective_labels
from pipeline.speakers import Roles, perspective_roles
from pipeline.windows import WindowConfig, cut_windows
from schemas.bundle import BundleError, Conversation, Track, Word
from schemas.grid import activity, merge, speech_intervals
from schemas.sample import WindowSample

from ..factories import tone

SECONDS = 4.0  # 64,000 samples = 20 micro-turns
WORDS = (  # A talks most, then B, then C; B interrupts A, C backchannels B
    ("one", 0.1, 0.6, "A"),
    ("two", 0.7, 1.4, "A"),
    ("three", 1.3, 2.6, "B"),
    ("yes", 1.8, 2.0, "C"),
    ("four", 2.8, 3.5, "A"),
)


def three_party(model_speakers: tuple[str, ...] | None = None, speakers: str = "ABC") -> AlignedConversation:
    words = tuple(Word(text=t, start_s=a, end_s=b, speaker=s) for t, a, b, s in WORDS if s in speakers)
    conv = Conversation(
        id="three",
        origin="memory",
        tracks=tuple(Track(speaker=s, path=f"{s}.wav") for s in speakers),
        words=words,
        model_speakers=model_speakers,
    )
    return AlignedConversation(
        conversation=conv,
        streams={s: tone(SECONDS, freq=200 + 150 * i, seed=i) for i, s in enumerate(speakers)},
        num_samples=int(SECONDS * 16_000),
        speech={s: speech_intervals(s, words=words, segments=None) for s in speakers},
    )


def test_roles_are_decided_once_in_model_speaker_order() -> None:
    aligned = three_party()
    conv, speech = aligned.conversation, aligned.speech
    assert perspective_roles(conv, speech, "all") == (
        Roles(output="A", user="B", others=("C",)),
        Roles(output="B", user="A", others=("C",)),
        Roles(output="C", user="A", others=("B",)),
    )
    assert perspective_roles(conv, speech, "first") == (Roles(output="A", user="B", others=("C",)),)
    ordered = three_party(model_speakers=("C", "X", "A"))  # X is no speaker: left out
    assert [r.output for r in perspective_roles(ordered.conversation, ordered.speech, "all")] == ["C", "A"]


def test_featurise_mixes_each_perspectives_others() -> None:
    aligned = three_party()
    featurised = featurise(aligned)
    k = 20
    assert [r.output for r in featurised.roles] == ["A", "B", "C"]
    for speaker, pcm in aligned.streams.items():
        np.testing.assert_array_equal(featurised.dmel[speaker], dmel_codes(pcm))
        np.testing.assert_array_equal(featurised.activity[speaker], activity(aligned.speech[speaker], k))
    for roles, mix in zip(featurised.roles, featurised.others, strict=True):
        assert mix is not None
        pcm = np.sum([aligned.streams[s] for s in roles.others], axis=0, dtype=np.float32)
        np.testing.assert_array_equal(mix.pcm, pcm)
        np.testing.assert_array_equal(mix.dmel, dmel_codes(pcm))
        speech = merge([iv for s in roles.others for iv in aligned.speech[s]])
        np.testing.assert_array_equal(mix.activity, activity(speech, k))
        assert mix.dmel.shape == (k * 16, 80) and mix.activity.dtype == np.float32
    threaded = featurise(aligned, threads=3)  # the same codes on threads
    for one, other in zip(featurised.others, threaded.others, strict=True):
        assert one is not None and other is not None and (one.dmel == other.dmel).all()
    assert featurise(three_party(speakers="AB")).others == (None, None)  # two parties: no others


def test_label_gives_each_perspective_its_labels_and_interruptions() -> None:
    aligned = three_party()
    labelled = label(featurise(aligned), LabelConfig())
    conv = aligned.conversation
    events = detect_events(ipus(conv.speakers, words=conv.words, segments=None, config=LabelConfig()), LabelConfig())
    assert list(labelled.events) == events and [e.kind for e in events] == ["interruption", "backchannel", "yield"]
    for x in labelled.perspectives:
        input_side = merge([iv for s in (x.roles.user, *x.roles.others) for iv in aligned.speech[s]])
        labels, floor = perspective_labels(
            events,
            output_speaker=x.roles.output,
            input_activity=activity(input_side, 20),
            output_activity=activity(aligned.speech[x.roles.output], 20),
        )
        np.testing.assert_array_equal(x.labels, labels)
        np.testing.assert_array_equal(x.floor, floor)
        assert x.interruptions == tuple(
            perspective_interruptions(events, output_speaker=x.roles.output, num_microturns=20)
        )
        assert x.events is None  # the bundle has no timed events
    assert [len(x.interruptions) for x in labelled.perspectives] == [1, 1, 0]  # B of A: not C's business


def test_label_refuses_model_speakers_that_name_no_speaker() -> None:
    with pytest.raises(BundleError, match="names none of the speakers"):
        label(featurise(three_party(model_speakers=("X",))), LabelConfig())


def test_windows_slice_the_precomputed_mixes_and_labels() -> None:
    labelled = label(featurise(three_party()), LabelConfig())
    mixes = [mix for mix in labelled.featurised.others if mix is not None]
    for n, sample in enumerate(cut_windows(labelled, WindowConfig(window_microturns=8))):
        window = WindowSample.from_members(sample.members)
        a, b = 8 * n, min(8 * n + 8, 20)
        assert [p.others_row for p in window.meta.perspectives] == [0, 1, 2]
        assert window.others_dmel is not None and window.others_activity is not None
        for row, mix in enumerate(mixes):
            np.testing.assert_array_equal(window.others_dmel[row, : b - a], mix.dmel.reshape(-1, 16, 80)[a:b])
            np.testing.assert_array_equal(window.others_activity[row, : b - a], mix.activity[a:b])
        for p, x in enumerate(labelled.perspectives):
            np.testing.assert_array_equal(window.labels[p, : b - a], x.labels[a:b])
            np.testing.assert_array_equal(window.floor[p, : b - a], x.floor[a:b])
