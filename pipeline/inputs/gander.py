"""Gander's interaction JSONL read by the job itself (DESIGN.md §2): one conversation per line of a ``.jsonl`` input.

    microturn run --input conversations.jsonl --output dataset/

A manifest line that is a Gander conversation (a ``turns`` list and no ``tracks``; the format is schemas/gander.py)
becomes a Conversation of two speakers, ``user`` and ``assistant`` (who plays the model). Each turn's ``audio_in``
(user) or ``speech_out`` (assistant) is a piece of its file placed at the turn's start_ms (`schemas.bundle.Piece`):
the decode stage cuts each piece from its file and assembles the speaker's track; the conversation lasts at least to
its last turn's end (and one micro-turn past its last event). Words: ``meta.word_timestamps``, else the turn's text
spread over it; tool calls and tool responses are events. Paths are relative to the JSONL file's directory, which
is the input root they are confined to, as for a manifest of bundles (pipeline/inputs/guard.py).

Rejections (kinds of schemas.bundle.BUNDLE_KINDS), one per line, the other lines go on:
- ``gander_bad_conversation``: malformed turns, times (not finite, negative, reversed, beyond an hour), words or tool
  calls; the reason names the turn;
- ``gander_needs_speech``: an assistant turn with text but no ``speech_out``: the job cannot synthesise speech (the
  pipeline never imports synth); ``microturn import gander FILE.jsonl --out BUNDLES`` speaks it with espeak-ng, then
  ``microturn run --input BUNDLES``;
- ``gander_no_user_audio``: a user turn without ``audio_in``;
- and as for any input: missing_file (at decode, naming the file), path_outside_input, malformed_json,
  not_utf_text, duplicate_id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas import gander as fmt
from schemas.bundle import BundleError, Conversation, Word, conversation_from_dict

IMPORT_HINT = (
    "run `microturn import gander FILE.jsonl --out BUNDLES` (it speaks such turns with espeak-ng) and then "
    "`microturn run --input BUNDLES`"
)
"""What a rejection for missing assistant speech tells the user to do."""


def _placed_tracks(obj: Mapping[str, Any], end_s: float) -> tuple[list[dict[str, Any]], list[Word]]:
    """The user and assistant tracks of a checked conversation as bundle tracks of placed pieces (seconds), at least
    `end_s` seconds long, and the words of the turns that have audio.

    Raises:
        BundleError: gander_needs_speech, gander_no_user_audio (naming the turn).
    """
    pieces: dict[str, list[dict[str, Any]]] = {fmt.USER: [], fmt.AGENT: []}
    words: list[Word] = []
    for turn in fmt.spoken_turns(obj):
        where = f"{turn.role} turn #{turn.index} (at {turn.start_s * 1000:g} ms)"
        if turn.audio is None:
            if turn.role == fmt.USER:
                raise BundleError("gander_no_user_audio", f"Gander {where} has no audio_in")
            if turn.text.strip():
                raise BundleError(
                    "gander_needs_speech",
                    f"Gander {where} has text but no speech_out, and the job does not synthesise speech: "
                    + IMPORT_HINT,
                )
            continue
        start_s, end = fmt.piece_span_s(turn.audio)
        piece = {"path": turn.audio["path"], "at_s": turn.start_s, "start_s": start_s}
        pieces[turn.role].append(piece if end is None else {**piece, "end_s": end})
        words += turn.words()
    tracks = [{"speaker": role, "pieces": pieces[role], "duration_s": end_s} for role in (fmt.USER, fmt.AGENT)]
    return tracks, words


def gander_conversation(
    obj: Mapping[str, Any], *, base: str, origin: str, default_id: str, read_text: Callable[[str], str]
) -> Conversation:
    """The Conversation of one Gander line (`obj`, decoded JSON with a ``turns`` list); `base` is the JSONL file's
    directory (relative paths are resolved against it), `default_id` the id of a line without ``id``.

    Raises:
        BundleError: gander_bad_conversation, gander_needs_speech, gander_no_user_audio, or a bundle kind of the
            conversation it makes (bad_word, bad_event ...).
    """
    if "id" not in obj:
        obj = {**obj, "id": default_id}
    try:
        fmt.check_conversation(obj)
    except fmt.GanderError as e:
        raise BundleError("gander_bad_conversation", f"Gander conversation: {e}") from None
    events = fmt.conversation_events(obj)
    tracks, words = _placed_tracks(obj, fmt.conversation_end_s(obj, events))
    bundle = fmt.bundle_object(obj, tracks=tracks, words=words, events=events)
    return conversation_from_dict(bundle, base=base, origin=origin, read_text=read_text)
