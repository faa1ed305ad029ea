"""Bounded reads of a bundle's text files (bundle.json, words, RTTM, text, manifests): regular files only, at most
`max_bytes`, and (unless allowed) only under the input root.

    python -c "from pipeline.inputs.safe_read import read_text_bounded as r; print(len(r('pyproject.toml', max_bytes=10**6)))"

A FIFO given as ``bundle.json`` used to block the job for ever and ``"rttm": "/dev/zero"`` read until memory ran out;
here a local path that is not a regular file is refused before it is opened, and a file longer than the limit is
refused after reading one byte past it. Paths of other file systems (gs://, s3://, ...) are read through Beam's
FileSystems, bounded the same way.
"""

from __future__ import annotations

import os
import posixpath
import stat

from apache_beam.io.filesystems import FileSystems

from schemas.bundle import BundleError

DEFAULT_MAX_TEXT_BYTES = 64 * 1024 * 1024
"""Default limit of one text input (--max_text_mb 64)."""


def is_local(path: str) -> bool:
    """A path of the local file system (no ``scheme://``)."""
    return "://" not in path


def check_regular_file(path: str, what: str = "file") -> None:
    """Raise BundleError ``not_a_regular_file`` when the local `path` exists and is not a regular file (a FIFO, a
    device, a directory, a socket); missing files are left to the caller. Symlinks are followed."""
    if not is_local(path):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise BundleError("unreadable_file", f"{what} {path}: cannot stat: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise BundleError("not_a_regular_file", f"{what} {path} is not a regular file (a FIFO, device or directory)")


def read_bytes_bounded(path: str, *, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> bytes:
    """The bytes of `path`, a regular file of at most `max_bytes` bytes.

    Raises:
        BundleError: ``not_a_regular_file``, ``file_too_large`` or ``unreadable_file`` (names the path, never its
            contents).
    """
    if is_local(path):
        check_regular_file(path)
        try:
            # O_NONBLOCK: a FIFO swapped in after the check must not block the open (regular files ignore it)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            raise BundleError("unreadable_file", f"cannot read {path}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BundleError("not_a_regular_file", f"{path} is not a regular file (a FIFO, device or directory)")
            data = f.read(max_bytes + 1)
    else:
        with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
            data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BundleError("file_too_large", f"{path} is larger than the limit of {max_bytes} bytes (--max_text_mb)")
    return data


def read_text_bounded(path: str, *, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> str:
    """`read_bytes_bounded` decoded as UTF-8 (BundleError ``not_utf_text`` naming the byte offset otherwise)."""
    data = read_bytes_bounded(path, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError("not_utf_text", f"{path} is not UTF-8 text (byte offset {e.start})") from None


def under_root(path: str, root: str) -> bool:
    """Whether `path` lies under directory `root`, by name after normalising both (``..`` resolved). A symlink the
    user put inside the root (a corpus linked in) counts as inside: the bundle's JSON names the link, not its target."""
    if is_local(path) and is_local(root):
        real, base = os.path.abspath(path), os.path.abspath(root)
        return real == base or real.startswith(base.rstrip("/") + "/")
    norm, base = posixpath.normpath(path), posixpath.normpath(root)
    return norm == base or norm.startswith(base.rstrip("/") + "/")


def check_confined(path: str, root: str, what: str) -> None:
    """Raise BundleError ``path_outside_input`` when `path` is not under `root` (see --allow_outside_paths)."""
    if not under_root(path, root):
        raise BundleError(
            "path_outside_input",
            f"{what} {path} is outside the input root {root}; pass --allow_outside_paths to allow it",
        )


def manifest_lines(path: str, *, max_bytes: int = 16 * DEFAULT_MAX_TEXT_BYTES) -> list[tuple[int, str | None, int]]:
    """(line number from 1, text or None when the line is not UTF-8, byte offset of the bad byte) of every non-blank
    line of a JSONL manifest; one bad line does not refuse the others.

    Raises:
        ValueError: the manifest itself cannot be read (not a regular file, too large, unreadable).
    """
    try:
        data = read_bytes_bounded(path, max_bytes=max_bytes)
    except BundleError as e:
        raise ValueError(f"--input {path}: {e}") from None
    out: list[tuple[int, str | None, int]] = []
    for i, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            out.append((i, None, e.start))
            continue
        if line.strip():
            out.append((i, line, 0))
    return out
