"""The micro-turn sample: one window of one conversation seen from one perspective (DESIGN.md §3-§5).

    python -c "from schemas.sample import LABEL_BITS; print(LABEL_BITS)"

A sample holds W micro-turns (default 150 = 30 s). Members, stored in the shard under ``{key}.{member}``:

| member            | dtype   | shape          | meaning                                                              |
|-------------------|---------|----------------|----------------------------------------------------------------------|
| meta.json         | JSON    |                | see META_FIELDS                                                      |
| input.dmel.npy    | uint8   | (W, 16, 80)    | user stream dMel codes 0..15, 16 frames of 12.5 ms per micro-turn    |
| others.dmel.npy   | uint8   | (W, 16, 80)    | mix of the remaining parties (only when more than two people talk)   |
| output.dmel.npy   | uint8   | (W, 16, 80)    | model stream dMel codes                                              |
| activity.npy      | float32 | (W, 3)         | speech fraction of each 200 ms: columns (input, others, output)      |
| labels.npy        | uint8   | (W,)           | bit mask of LABEL_BITS                                               |
| floor.npy         | int16   | (W,)           | micro-turns until the next floor change (0 at its onset), -1: none   |
| mask.npy          | uint8   | (W,)           | 1 = a micro-turn of the conversation, 0 = padding after its end      |
| words.json        | JSON    |                | list of WORD_FIELDS objects                                          |
| annotations.json  | JSON    |                | list of ANNOTATION_FIELDS objects (labelled spans, e.g. refusals)    |
| frames.mjpeg      | JPEG    |                | the window's video frames back to back (only with video)             |
| frames.index.npy  | int64   | (W, 2)         | byte offset and length of each micro-turn's JPEG; 0 length = none   |
| input.flac etc.   | FLAC    | (W * 3200,)    | optional raw 16 kHz audio per stream (``--keep-audio``)              |

The last micro-turn of a conversation is usually partial: its valid sample count is ``meta.last_valid_samples``
(for the window that holds it); its mask is 1 and the padded audio is digital silence.
"""

from __future__ import annotations

STREAMS = ("input", "others", "output")
"""Stream names. `input` is the user, `others` the rest of the non-model parties, `output` the model."""

LABEL_BITS = {
    "input_speech": 1,  # the user side (user or others) speaks in this micro-turn
    "output_speech": 2,  # the model speaks in this micro-turn
    "backchannel": 4,  # onset of a user backchannel during the model's turn
    "interruption": 8,  # onset of a user interruption: user starts over the model, which stops (late or not: meta.json)
    "yield_to_input": 16,  # onset of a turn the user takes after the model yielded (model silent)
    "yield_to_output": 32,  # onset of a turn the model takes after the user yielded (turn-taking cue)
    "output_backchannel": 64,  # onset of a model backchannel during the user's turn
    "output_interruption": 128,  # onset of a model interruption of the user
}
"""Interaction labels (bit -> name). Silence = neither speech bit, overlap = both speech bits.
Definitions and thresholds: pipeline/labels.py; the thresholds used are written to manifest.json."""

EVENT_LABELS = ("backchannel", "interruption", "yield_to_input", "yield_to_output", "output_backchannel",
                "output_interruption")

META_FIELDS = {
    "format_version": "int: schemas.shard.FORMAT_VERSION",
    "key": "str: sample key, '{conversation_key}_{perspective}_{window:05d}'",
    "conversation_id": "str: the bundle id as given",
    "conversation_key": "str: key-safe id (schemas.bundle.sanitise_id)",
    "perspective": "str: key-safe id of the speaker playing the model",
    "window": "int: window index within the conversation and perspective",
    "start_microturn": "int: conversation micro-turn of the window's first micro-turn",
    "num_microturns": "int: micro-turns of the conversation in this window (mask sum)",
    "window_microturns": "int: W, the padded window length",
    "last_valid_samples": "int: valid 16 kHz samples of the window's last real micro-turn (1..3200)",
    "conversation_samples": "int: the conversation's length in 16 kHz samples",
    "speakers": "{'input': str|null, 'others': [str], 'output': str}: original speaker ids",
    "streams": "[str]: which dMel members the sample has",
    "language": "str", "source": "str", "licence": "str", "split": "str",
    "word_sources": "{source: count} over the window's words",
    "video": "null | {frames: int, audio_video_offset_s: float}: frames stored in the window; measured offset",
    "tags": "{str: str}: the bundle's tags (e.g. category, layout, is_refusal for synthesised refusals)",
    "interruptions": "[{microturn: int, label: 'interruption' | 'output_interruption', stop_latency_s: float}]: the "
                     "window's interruption onsets (window micro-turn, as in labels.npy) and how long the interrupted "
                     "side took to stop, seconds (filter or weight slow yields with it)",
}

ANNOTATION_FIELDS = {
    "label": "str: e.g. 'refusal'",
    "stream": "'input' | 'others' | 'output'",
    "speaker": "str: original speaker id",
    "start_microturn": "int: first window micro-turn the span touches (clipped to the window)",
    "end_microturn": "int: one past the last window micro-turn it touches (clipped)",
    "start_s": "float: seconds from the window start (may be < 0)",
    "end_s": "float: seconds from the window start",
}

WORD_FIELDS = {
    "text": "str",
    "stream": "'input' | 'others' | 'output'",
    "speaker": "str: original speaker id",
    "start_s": "float: seconds from the window start (may be < 0 for a word that began before the window)",
    "end_s": "float: seconds from the window start",
    "microturn": "int: window micro-turn the word is placed in (input/others: contains its end; output: its start)",
    "source": "'human' | 'tts' | 'aligned' | 'asr'",
    "score": "float | null: alignment confidence",
}
