import json

import pytest

from schemas.bundle import (
    BUNDLE_KINDS,
    BundleError,
    Conversation,
    Track,
    Word,
    conversation_from_dict,
    conversation_to_dict,
    moshi_conversation,
    parse_rttm,
    parse_words_json,
    sanitise_id,
)


def test_words_sorted_and_validated() -> None:
    words = parse_words_json(
        json.dumps(
            [
                {"text": "b", "start": 1.0, "end": 1.5, "speaker": "B"},
                {"text": "a", "start": 0.0, "end": 0.4, "speaker": "A", "score": 0.9, "source": "aligned"},
            ]
        )
    )
    assert [w.text for w in words] == ["a", "b"]
    assert words[0].score == 0.9 and words[0].source == "aligned"


@pytest.mark.parametrize(
    ("text", "reason", "kind"),
    [
        ("{not json", "not valid JSON", "malformed_json"),
        ('[{"text": "a", "start": 1, "speaker": "A"}]', "has no 'end'", "bad_word"),
        ('[{"text": "a", "start": 2, "end": 1, "speaker": "A"}]', "need 0 <= start <= end", "bad_word"),
        ('[{"text": "a", "start": "x", "end": 1, "speaker": "A"}]', "not a number", "bad_number"),
        ('[{"text": "a", "start": 0, "end": 1, "speaker": "A", "source": "magic"}]', "source 'magic'", "bad_word"),
        ('{"foo": 1}', "not a list of words", "bad_transcript"),
    ],
)
def test_malformed_transcripts_give_readable_reasons(text: str, reason: str, kind: str) -> None:
    with pytest.raises(BundleError, match=reason) as e:
        parse_words_json(text)
    assert e.value.kind == kind and kind in BUNDLE_KINDS


def test_rttm() -> None:
    segs = parse_rttm(
        "SPEAKER m 1 2.59 0.36 <NA> <NA> FEE013 <NA> <NA>\nSPEAKER m 1 0.00 5.29 <NA> <NA> FEE016 <NA> <NA>\n"
    )
    assert [(s.speaker, s.start_s) for s in segs] == [("FEE016", 0.0), ("FEE013", 2.59)]
    assert segs[1].end_s == pytest.approx(2.95)
    with pytest.raises(BundleError, match="line 1") as e:
        parse_rttm("LEXEME x")
    assert e.value.kind == "bad_rttm"


def test_moshi_layout_maps_main_to_left_channel() -> None:
    conv = moshi_conversation(
        wav_path="/d/x.wav",
        origin="/d/x.json",
        json_text=json.dumps({"alignments": [["hi", [0.1, 0.3], "SPEAKER_MAIN"], ["yo", [0.5, 0.7], "SPEAKER_1"]]}),
    )
    assert conv.tracks == (
        Track(speaker="main", path="/d/x.wav", channel=0),
        Track(speaker="user", path="/d/x.wav", channel=1),
    )
    assert [w.speaker for w in conv.words] == ["main", "user"]
    assert conv.model_speakers == ("main",)


def test_bundle_round_trip() -> None:
    conv = Conversation(
        id="x",
        origin="o",
        tracks=(Track(speaker="A", path="/b/A.wav"), Track(speaker="B", path="/b/s.flac", channel=1)),
        words=(Word(text="w", start_s=0.1, end_s=0.2, speaker="A", source="tts"),),
        licence="CC0",
    )
    obj = conversation_to_dict(conv, base="/b")
    assert obj["tracks"][0]["path"] == "A.wav"
    back = conversation_from_dict(json.loads(json.dumps(obj)), base="/b", origin="o", read_text=lambda p: "")
    assert back.tracks == conv.tracks and back.words == conv.words and back.licence == "CC0"


@pytest.mark.parametrize(
    ("obj", "reason", "kind"),
    [
        ([], "not a JSON object", "not_an_object"),
        ({"tracks": [{"path": "a"}]}, "no 'id'", "no_id"),
        ({"id": "x"}, "no 'tracks'", "no_tracks"),
        ({"id": "x", "tracks": [{"speaker": "A", "path": "a", "channel": -1}]}, "channel", "bad_track"),
        (
            {"id": "x", "tracks": [{"speaker": "A", "path": "a"}, {"speaker": "A", "path": "b"}]},
            "repeat",
            "duplicate_speaker",
        ),
        ({"id": "x", "bundle_version": 9, "tracks": []}, "bundle_version", "unsupported_version"),
    ],
)
def test_bad_bundles(obj: object, reason: str, kind: str) -> None:
    with pytest.raises(BundleError, match=reason) as e:
        conversation_from_dict(obj, base="/b", origin="o", read_text=lambda p: "")
    assert e.value.kind == kind


def test_bundle_error_kinds_are_checked_and_survive_pickling() -> None:
    import pickle

    with pytest.raises(ValueError, match="unknown BundleError kind"):
        BundleError("no_such_kind", "x")
    back = pickle.loads(pickle.dumps(BundleError("no_id", "bundle has no 'id'")))
    assert (back.kind, str(back)) == ("no_id", "bundle has no 'id'")
    assert len(set(BUNDLE_KINDS)) == len(BUNDLE_KINDS)


def test_sanitised_ids_have_no_dots_and_do_not_collide() -> None:
    a, b = sanitise_id("a.b"), sanitise_id("a-b")
    assert "." not in a and "_" not in a and a != b
    assert sanitise_id("plain-id-01") == "plain-id-01"
