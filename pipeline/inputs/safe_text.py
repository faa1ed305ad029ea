"""Text that every encoder takes: lone surrogates (from JSON's ``"\\ud800"`` or from file names with bytes that are
not UTF-8, which Python decodes with ``surrogateescape``) made visible as backslash escapes.

    python -c "from pipeline.inputs.safe_text import safe_text; print(safe_text('caf\\udce9'))"

Beam's string coder, Parquet and JSON-as-UTF-8 refuse such strings; one of them in one conversation used to stop the
whole job. The read stage passes every string of a conversation except its file paths through `safe_text` (paths
must stay as the file system gave them, to be opened), and every rejection's input, reason and id go through it too.
A byte that is not UTF-8 in a file name becomes ``\\xNN``; a lone surrogate from JSON becomes ``\\udNNN``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

PATH_FIELDS = frozenset({"path"})
"""Dataclass fields `escape_strings` leaves alone: file paths, which must be opened as given."""


def safe_text(text: str) -> str:
    """`text` unchanged when it encodes as UTF-8; else each byte of a ``surrogateescape``-decoded file name as
    ``\\xNN`` and each other lone surrogate as ``\\udNNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that surrogateescape could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def escape_strings(value: Any) -> Any:
    """`value` with `safe_text` applied to every string inside it (dicts, lists, tuples, frozen dataclasses), except
    dataclass fields named in `PATH_FIELDS`. Returns `value` itself when nothing needed escaping."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, Mapping):
        items = {escape_strings(k): escape_strings(v) for k, v in value.items()}
        return value if items == value else items
    if isinstance(value, (list, tuple)):
        out = [escape_strings(v) for v in value]
        if all(a is b for a, b in zip(out, value, strict=True)):
            return value
        return tuple(out) if isinstance(value, tuple) else out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if f.name in PATH_FIELDS:
                continue
            old = getattr(value, f.name)
            new = escape_strings(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value
