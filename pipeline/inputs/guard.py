"""The read stage's guard: one input's failure of any sort becomes a `BundleError` with a kind, never the job's end.

    python -c "from pipeline.inputs.guard import InputPolicy; print(InputPolicy(root='in'))"

`read_input` wraps `pipeline.read.load_conversation`: text files are read bounded and regular-only
(`pipeline.inputs.safe_read`), confined to the input root unless ``--allow_outside_paths``; JSON nested too deep,
numbers too large and any other exception of the parser become rejections with a kind; strings that no encoder takes
(lone surrogates) are escaped (`pipeline.inputs.safe_text`); a track or video path that is not a regular file, cannot
be encoded as a file name, or lies outside the root is rejected before the decoder opens it (a FIFO would block it for
ever). A JSONL manifest is read line by line (`pipeline.inputs.safe_read.manifest_lines`), so a line with a byte that
is not UTF-8 is one rejection (kind ``not_utf_text``) that names the line.
"""

from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import dataclass
from typing import Any

from pipeline.inputs.lhotse import is_lhotse_manifest
from pipeline.inputs.safe_read import (
    DEFAULT_MAX_TEXT_BYTES,
    check_confined,
    check_regular_file,
    is_local,
    read_text_bounded,
    under_root,
)
from pipeline.inputs.safe_text import escape_strings, safe_text
from pipeline.read import UNDECODABLE_LINE, InputRef, load_conversation
from schemas.bundle import BundleError, Conversation

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPolicy:
    """What a bundle may read. `root`: the input root its paths must lie under (None: anywhere); `extra_roots`:
    more directories its paths may lie under (--extra_input_root: e.g. the audio of bundles written elsewhere);
    `allow_outside`: --allow_outside_paths; `max_text_bytes`: limit of one text file (--max_text_mb)."""

    root: str | None = None
    extra_roots: tuple[str, ...] = ()
    allow_outside: bool = False
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES

    def confine(self, path: str, what: str) -> None:
        if self.root is not None and not self.allow_outside:
            if not any(under_root(path, r) for r in self.extra_roots):
                check_confined(path, self.root, what)

    def read_text(self, path: str) -> str:
        """A bundle's text file: confined, regular, bounded, UTF-8."""
        _check_encodable(path, "file")
        self.confine(path, "file")
        return read_text_bounded(path, max_bytes=self.max_text_bytes)


def input_root(input_path: str) -> str:
    """The directory a bundle's paths are confined to: --input itself, or a manifest's (or Lhotse manifest's)
    directory."""
    if input_path.endswith(".jsonl") or is_lhotse_manifest(input_path):
        return posixpath.dirname(input_path.rstrip("/")) or "."
    return input_path.rstrip("/") or "/"


def _check_encodable(path: str, what: str) -> None:
    if is_local(path):
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise BundleError("unencodable_path", f"{what} path {safe_text(path)!r} is not a valid file name") from None


def _check_media(conv: Conversation, policy: InputPolicy) -> None:
    paths = [(f"track of speaker {t.speaker!r}", path) for t in conv.tracks for path in t.paths]
    if conv.video is not None:
        paths.append(("video", conv.video.path))
    for what, path in paths:
        _check_encodable(path, what)
        policy.confine(path, what)
        check_regular_file(path, what)


def read_input(ref: InputRef, policy: InputPolicy | None = None) -> Conversation:
    """`load_conversation` under `policy`, with every failure a BundleError (kind from schemas.bundle.BUNDLE_KINDS)
    and every string but the file paths safe for Beam's coder and Parquet."""
    policy = policy or InputPolicy()
    if ref.kind == UNDECODABLE_LINE:
        raise BundleError(
            "not_utf_text", f"manifest line {ref.line} is not UTF-8 text (byte offset {ref.text} of the line)"
        )
    try:
        if ref.kind in ("bundle", "moshi"):
            _check_encodable(ref.path, "bundle")
            check_regular_file(ref.path, "bundle")
        conv = load_conversation(ref, read=policy.read_text)
        conv = escape_strings(conv)
        _check_media(conv, policy)
        return conv
    except BundleError:
        raise
    except RecursionError:
        raise BundleError("too_deep", "JSON nested too deeply to read (Python's recursion limit)") from None
    except OverflowError as e:
        raise BundleError("bad_number", f"a number is too large: {e}") from None
    except MemoryError:
        raise BundleError("file_too_large", "the bundle does not fit in memory") from None
    except (OSError, UnicodeError) as e:
        raise BundleError("unreadable_file", f"cannot read a file of the bundle: {safe_text(str(e))}") from None
    except Exception as e:  # noqa: BLE001 - any parser failure of one input is that input's rejection
        logger.debug("malformed bundle %s", safe_text(ref.origin), exc_info=True)
        raise BundleError(
            "malformed_bundle", f"cannot parse the bundle: {type(e).__name__}: {safe_text(str(e))[:300]}"
        ) from None


def add_input_guard_args(parser: Any) -> None:
    """The options of `InputPolicy` (and the output guard's --overwrite) on `microturn run`'s parser."""
    parser.add_argument(
        "--allow_outside_paths",
        action="store_true",
        help="let bundles name files outside the input root (the --input directory, or a manifest's directory); "
        "by default such a bundle is rejected (path_outside_input)",
    )
    parser.add_argument(
        "--extra_input_root",
        default=None,
        help="a second directory that bundles may name files under (e.g. the audio that bundles written elsewhere "
        "name; by default only the input root)",
    )
    parser.add_argument(
        "--max_text_mb",
        type=float,
        default=DEFAULT_MAX_TEXT_BYTES / 2**20,
        help="MiB: largest text input (bundle.json, words, RTTM, text file) a bundle may name; larger ones are "
        "rejected (file_too_large) (default 64)",
    )


def policy_from_options(opts: Any) -> InputPolicy:
    """The InputPolicy of a job's options (--input, --allow_outside_paths, --max_text_mb)."""
    if opts.max_text_mb <= 0:
        raise ValueError(f"--max_text_mb must be > 0, got {opts.max_text_mb}")
    return InputPolicy(
        root=input_root(opts.input),
        extra_roots=(opts.extra_input_root.rstrip("/") or "/",) if opts.extra_input_root else (),
        allow_outside=bool(opts.allow_outside_paths),
        max_text_bytes=int(opts.max_text_mb * 2**20),
    )
