"""Issue 13.8: bundle objects of the wrong types are BundleErrors with a kind, never TypeError/OverflowError."""

from __future__ import annotations

import pytest

from schemas.bundle import BundleError, conversation_from_dict, parse_words


def _bundle(**changes: object) -> dict:
    obj = {
        "id": "c",
        "tracks": [{"speaker": "A", "path": "A.wav"}, {"speaker": "B", "path": "B.wav"}],
        "words": [{"text": "hi", "start": 0.1, "end": 0.4, "speaker": "A"}],
    }
    obj.update(changes)
    return obj


def _parse(obj: dict) -> object:
    return conversation_from_dict(obj, base="/in", origin="test", read_text=lambda p: "")


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"model_speakers": 5}, "bad_model_speakers"),
        ({"model_speakers": "main"}, "bad_model_speakers"),  # a string is refused, never split into characters
        ({"model_speakers": [1, 2]}, "bad_model_speakers"),
        ({"annotations": 5}, "bad_annotation"),
        ({"words": {"alignments": 5}}, "bad_transcript"),
        ({"words": [{"text": "hi", "start": 10**400, "end": 10**401, "speaker": "A"}]}, "bad_number"),
        ({"words": [{"text": "hi", "start": True, "end": 1, "speaker": "A"}]}, "bad_number"),
        (
            {"tracks": [{"speaker": "A", "path": "AB.wav", "channel": True}, {"speaker": "B", "path": "B.wav"}]},
            "bad_track",
        ),
    ],
)
def test_wrong_types_are_bundle_errors_with_a_kind(changes: dict, kind: str) -> None:
    with pytest.raises(BundleError) as e:
        _parse(_bundle(**changes))
    assert e.value.kind == kind
    assert len(str(e.value)) < 400


def test_model_speakers_list_still_accepted() -> None:
    assert _parse(_bundle(model_speakers=["A"])).model_speakers == ("A",)


def test_rttm_reason_does_not_quote_the_file() -> None:
    secret = "root:x:0:0:root:/root:/bin/bash"
    with pytest.raises(BundleError) as e:
        conversation_from_dict(_bundle(rttm="turns.rttm"), base="/in", origin="t", read_text=lambda p: secret)
    assert e.value.kind == "bad_rttm"
    assert "root" not in str(e.value)


def test_huge_word_time_from_alignments() -> None:
    with pytest.raises(BundleError) as e:
        parse_words({"alignments": [["hi", [10**400, 10**400], "A"]]})
    assert e.value.kind == "bad_number"
