"""The Gander format (schemas/gander.py), shared by the job's Gander input and `microturn import gander`: checks,
words, events, the bundle object; and tracks of placed pieces (schemas.bundle.Piece) written and read back.

PYTHONPATH=. python -m pytest -q tests/schemas/test_gander.py
"""

from __future__ import annotations

import pytest

from schemas import gander
from schemas.bundle import BundleError, Conversation, Piece, Track, conversation_from_dict, conversation_to_dict

CONV = {
    "id": "c",
    "turns": [
        {"role": "user", "start_ms": 0, "end_ms": 1000, "text": "a b", "audio_in": {"path": "u.wav", "end_ms": 900}},
        {
            "role": "assistant",
            "start_ms": 1200,
            "end_ms": 2000,
            "text": "ok",
            "speech_out": {"path": "a.wav"},
            "tool_calls": [{"name": "lookup", "arguments": '{"q": "x"}'}, {"name": "task_start", "time_ms": 1500}],
        },
        {"role": "tool", "start_ms": 2500, "tool_response": {"content": 42}},
        {
            "role": "user",
            "start_ms": 2600,
            "end_ms": 2900,
            "audio_in": {"path": "u.wav", "start_ms": 1000},
            "meta": {"word_timestamps": [{"word": "yes", "start_ms": 2650, "end_ms": 2800}]},
        },
    ],
}


def test_is_gander_wants_turns_and_no_tracks() -> None:
    assert (
        gander.is_gander(CONV)
        and not gander.is_gander({"id": "b", "tracks": [], "turns": []})
        and not gander.is_gander([CONV])
    )


@pytest.mark.parametrize(
    ("turns", "words"),
    [
        ([], "no turns"),
        (["hello"], "turn #0 is not an object"),
        ([{"role": "user", "start_ms": float("nan")}], "not a finite number"),
        ([{"role": "user", "start_ms": 900, "end_ms": 100}], "before it starts"),
        ([{"role": "user", "start_ms": 0, "end_ms": 5e14}], "outside 0 .."),
        ([{"role": "user", "start_ms": 0, "audio_in": {"start_ms": 0}}], "audio_in needs a 'path'"),
        (
            [{"role": "assistant", "start_ms": 0, "end_ms": 1, "tool_calls": [{"name": "f", "arguments": [1]}]}],
            "JSON object",
        ),
    ],
)
def test_check_conversation_names_what_is_wrong(turns: list, words: str) -> None:
    with pytest.raises(gander.GanderError, match=words):
        gander.check_conversation({"id": "x", "turns": turns})


def test_words_events_and_length() -> None:
    gander.check_conversation(CONV)
    turns = list(gander.spoken_turns(CONV))
    assert [(t.index, t.role, t.audio is not None) for t in turns] == [
        (0, "user", True),
        (1, "assistant", True),
        (3, "user", True),
    ]
    spread = turns[0].words()
    assert [(w.text, w.start_s, w.end_s, w.source, w.score) for w in spread] == [
        ("a", 0.0, 0.5, "aligned", None),
        ("b", 0.5, 1.0, "aligned", None),
    ]
    (timed,) = turns[2].words()
    assert (timed.text, timed.start_s, timed.end_s, timed.source) == ("yes", 2.65, 2.8, "human")
    events = gander.conversation_events(CONV)
    assert [(e["kind"], e["time_s"], e["name"]) for e in events] == [
        ("task_start", 1.5, "task_start"),
        ("tool_call", 2.0, "lookup"),
        ("tool_response", 2.5, "task_start"),  # named by the last call
    ]
    assert events[1]["arguments"] == {"q": "x"} and events[2]["content"] == 42
    assert gander.conversation_end_s(CONV, events) == pytest.approx(2.9)
    bundle = gander.bundle_object(CONV, tracks=[], words=spread, events=events)
    assert bundle["model_speakers"] == ["assistant"] and bundle["source"] == "gander" and bundle["id"] == "c"
    assert bundle["words"][0] == {"text": "a", "start": 0.0, "end": 0.5, "speaker": "user", "source": "aligned"}


def test_track_of_placed_pieces_is_written_and_read_back() -> None:
    track = Track(
        speaker="user",
        path=None,
        pieces=(Piece(path="/d/u.wav", at_s=0.0, end_s=0.9), Piece(path="/d/u.wav", at_s=2.6, start_s=1.0)),
        duration_s=2.9,
    )
    assert track.paths == ("/d/u.wav",)
    conv = Conversation(id="c", origin="x", tracks=(track, Track(speaker="assistant", path="/d/a.wav")))
    obj = conversation_to_dict(conv, base="/d")
    assert obj["tracks"][0]["pieces"][0] == {"path": "u.wav", "at_s": 0.0, "start_s": 0.0, "end_s": 0.9}
    back = conversation_from_dict(obj, base="/d", origin="x", read_text=str)
    assert back.tracks[0] == track
    obj["tracks"][0]["pieces"][1]["at_s"] = -1
    with pytest.raises(BundleError) as e:
        conversation_from_dict(obj, base="/d", origin="x", read_text=str)
    assert e.value.kind == "bad_track"
