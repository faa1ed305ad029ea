"""cut_windows write-then-read: a tiny two-speaker conversation cut into 4-micro-turn windows (format 3: every
stream once per window), encoded with the record's to_members, decoded with from_members and seen from each
perspective by the record's view and by the reader's decode_samples.

.venv/bin/python -m pytest -q tests/pipeline/test_windows.py
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.align import AlignedConversation, align
from pipeline.decode import decode_conversation
from pipeline.features import dmel_codes, featurise
from pipeline.labels import LabelConfig, LabelledConversation, label
from pipeline.read import list_inputs, load_conversation
from pipeline.windows import WindowConfig, cut_windows
from schemas.reader import decode_samples
from schemas.sample import MicroTurnSample, WindowSample
from schemas.shard import FORMAT_VERSION
from tests.factories import make_bundle

SECONDS = 3.0  # 48,000 samples = 15 micro-turns: windows of 4 are 4 + 4 + 4 + 3 (one padded micro-turn)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> AlignedConversation:
    root = tmp_path_factory.mktemp("windows")
    make_bundle(root / "conv", seconds=SECONDS)  # words: A "hello" 0.10-0.50, "there" 0.55-1.00; B "hi" 1.45-1.80
    (ref,) = list_inputs(str(root))
    return align(decode_conversation(load_conversation(ref)))


@pytest.fixture(scope="module")
def labelled(aligned: AlignedConversation) -> LabelledConversation:
    """The featurise and label stages, as the job runs them."""
    return label(featurise(aligned), LabelConfig())


def _samples(labelled: LabelledConversation, **config: object) -> list[tuple[str, MicroTurnSample, dict]]:
    out = []
    for sample in cut_windows(labelled, WindowConfig(window_microturns=4, **config)):
        members = dict(sample.members)
        window = WindowSample.from_members(members)
        assert window.to_members() == members  # the record encodes back to the same bytes
        views = decode_samples({"__key__": sample.key, **members})
        assert len(views) == len(window.meta.perspectives) == len(sample.rows)
        out += [(sample.key, window.view(p), decoded) for p, decoded in enumerate(views)]
    return out


def test_a_window_stores_each_speaker_once_and_compressed(labelled: LabelledConversation) -> None:
    for sample in cut_windows(labelled, WindowConfig(window_microturns=4)):
        assert all(name.endswith(".zst") for name in sample.members)
        window = WindowSample.from_members(sample.members)
        assert window.meta.speakers == ("A", "B") and window.dmel.shape == (2, 4, 16, 80)
        assert [p.perspective for p in window.meta.perspectives] == ["A", "B"] and window.others_dmel is None
        assert window.labels.shape == (2, 4) and [r["perspective"] for r in sample.rows] == ["A", "B"]


def test_windows_cover_each_perspective_with_a_padded_last_window(labelled: LabelledConversation) -> None:
    samples = _samples(labelled)
    assert [(key, r.meta.perspective) for key, r, _ in samples] == [
        (f"conv_{w:05d}", p) for w in range(4) for p in "AB"
    ]
    for key, record, decoded in samples:
        meta = record.meta
        assert meta.key == key and meta.format_version == FORMAT_VERSION and meta.window_microturns == 4
        assert meta.conversation_samples == 48_000 and meta.streams == ("input", "output")
        assert meta.speakers.output == meta.perspective and meta.speakers.others == ()
        assert meta.start_microturn == 4 * meta.window and meta.num_microturns == (3 if meta.window == 3 else 4)
        assert meta.last_valid_samples == 3_200 and meta.video is None and record.frames is None
        for name, dtype, shape in [
            ("input.dmel.npy", np.uint8, (4, 16, 80)),
            ("output.dmel.npy", np.uint8, (4, 16, 80)),
            ("activity.npy", np.float32, (4, 3)),
            ("labels.npy", np.uint8, (4,)),
            ("floor.npy", np.int16, (4,)),
            ("mask.npy", np.uint8, (4,)),
        ]:
            assert decoded[name].dtype == dtype and decoded[name].shape == shape, name
        np.testing.assert_array_equal(decoded["mask.npy"], [1, 1, 1, 1] if meta.window < 3 else [1, 1, 1, 0])
        assert decoded["meta.json"] == meta.to_dict() and "others.dmel.npy" not in decoded
        if meta.window == 3:  # the padded micro-turn is silent and unlabelled
            assert (record.activity[3] == 0).all() and record.labels[3] == 0 and (record.input_dmel[3] == 0).all()


def test_dmel_of_each_window_is_the_conversation_slice(labelled: LabelledConversation) -> None:
    codes_a = dmel_codes(labelled.featurised.aligned.streams["A"]).reshape(-1, 16, 80)
    for _, record, _ in _samples(labelled):
        a = record.meta.start_microturn
        n = record.meta.num_microturns
        own = record.output_dmel if record.meta.perspective == "A" else record.input_dmel
        np.testing.assert_array_equal(own[:n], codes_a[a : a + n])


def test_words_are_placed_in_window_micro_turns(labelled: LabelledConversation) -> None:
    placed = {
        (record.meta.perspective, record.meta.window): [(w.text, w.stream, w.microturn) for w in record.words]
        for _, record, _ in _samples(labelled)
    }
    # output words go to the micro-turn holding their start, input words to the one holding their end
    assert placed[("A", 0)] == [("hello", "output", 0), ("there", "output", 2)]
    assert placed[("A", 2)] == [("hi", "input", 1)]  # ends at 1.80 s: micro-turn 9 = window 2, position 1
    assert placed[("B", 0)] == [("hello", "input", 2)]  # ends at 0.50 s: micro-turn 2
    assert placed[("B", 1)] == [("there", "input", 1), ("hi", "output", 3)]  # 1.00 s -> 5; 1.45 s -> 7
    assert placed[("A", 1)] == placed[("A", 3)] == placed[("B", 2)] == []
    words = {w.text: w for _, record, _ in _samples(labelled) if record.meta.perspective == "B" for w in record.words}
    assert words["hi"].start_s == pytest.approx(1.45 - 0.8) and words["hi"].speaker == "B"  # window-relative


def test_keep_audio_stores_each_stream_padded_to_the_window(aligned: AlignedConversation) -> None:
    samples = _samples(label(featurise(aligned, perspectives="first"), LabelConfig()), keep_audio=True)
    assert len(samples) == 4
    last = samples[-1][1]
    assert set(last.audio) == {"input", "output"}
    for pcm in last.audio.values():
        assert pcm.dtype == np.float32 and pcm.shape == (4 * 3200,) and (pcm[3 * 3200 :] == 0).all()
    start = last.meta.start_microturn * 3200
    np.testing.assert_allclose(last.audio["output"][: 3 * 3200], aligned.streams["A"][start:], atol=1 / 32768)
