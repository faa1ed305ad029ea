"""Names taken from data, confined to an output directory: a dataset (or any input) is data too.

    python -c "from schemas.paths import safe_name; print(safe_name('../../../'))"

Every writer that builds a file or folder name from something it read (a sample's ``conversation_key`` or
``perspective``, a clip id) passes the data-derived part through `safe_name` (one path component, never ``..``, a
separator or an absolute path) and joins it to its output with `confined_join`, which refuses any path that would
still land outside the output (a symlink pointing out, a name that slipped through).
"""

from __future__ import annotations

import os
import re

from schemas.bundle import sanitise_id

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")
"""A name the pipeline itself writes (sanitised keys, perspectives, ``{key}_{perspective}``): kept as it is."""


def safe_name(value: object) -> str:
    """`value` as one safe path component: a name the pipeline writes is kept; anything else (``..``, ``/``,
    dots, an absolute path, an empty string) becomes its sanitised form with a hash (schemas.bundle.sanitise_id),
    so two different unsafe names stay apart.

    Raises:
        ValueError: `value` is not a string (e.g. a number or list where a key was expected).
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a name (a string), got {type(value).__name__} {value!r:.60}")
    if _SAFE_COMPONENT.fullmatch(value):
        return value
    return sanitise_id(value) or sanitise_id("/")  # "" (sanitise_id keeps it) becomes a hashed name


def confined_join(root: str, *parts: str) -> str:
    """``os.path.join(root, *parts)``, refused unless it lies inside `root` once ``..`` and symlinks are resolved.

    Raises:
        ValueError: the path would be outside `root` (naming both).
    """
    path = os.path.join(root, *parts)
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise ValueError(f"refusing to write {path!r}: it is outside the output {root!r} (a name taken from data)")
    return path
