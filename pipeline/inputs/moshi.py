"""moshi-finetune's own index: a ``data.jsonl`` of ``{"path": "X.wav", "duration": D}`` lines beside X.wav + X.json.

    microturn run --input data.jsonl --output out

A line of a ``.jsonl`` manifest that has a ``path`` but neither ``id`` nor ``tracks`` is such an index entry: the
stereo ``X.wav`` (left channel the model, right the user; path relative to the index file) with its alignments in
``X.json`` beside it, read as a moshi-finetune pair (schemas.bundle.moshi_conversation; the id is the file name
without extension). Without ``X.json`` the conversation has no transcript (like per-speaker audio files).
``duration`` (seconds) is not needed: the audio is measured when it is decoded.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from apache_beam.io.filesystems import FileSystems

from schemas.bundle import BundleError, Conversation, moshi_conversation


def is_moshi_index_line(obj: Any) -> bool:
    """True for a moshi-finetune index entry (``{"path": ..., "duration": ...}``), not a bundle object."""
    return isinstance(obj, dict) and "path" in obj and "id" not in obj and "tracks" not in obj


def moshi_index_conversation(obj: dict, *, base: str, origin: str, read_text: Callable[[str], str]) -> Conversation:
    """The conversation of one index entry; `base` is the index file's directory.

    Raises:
        BundleError: when the path is not a string naming a .wav file.
    """
    path = obj["path"]
    if not isinstance(path, str) or not path.lower().endswith(".wav"):
        raise BundleError(
            "bad_index_line", f"moshi-finetune index line: 'path' must name a .wav file, got {path!r:.80}"
        )
    if "://" in path or path.startswith("/") or not base:
        wav = path
    elif "://" in base:
        wav = base.rstrip("/") + "/" + path
    else:
        wav = posixpath.normpath(posixpath.join(base, path))
    alignments = posixpath.splitext(wav)[0] + ".json"
    if FileSystems.exists(alignments):
        return moshi_conversation(wav_path=wav, json_text=read_text(alignments), origin=origin)
    return replace(moshi_conversation(wav_path=wav, json_text="[]", origin=origin), words=None)
