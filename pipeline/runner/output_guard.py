"""The job's claim on --output: checked before any work, locked while the job runs, tidied after it.

    python -c "from pipeline.runner.output_guard import is_our_output; print(is_our_output('/nonexistent'))"

- `claim_output` (before any input is read): --output must not be a file; the directory is created if missing;
  a directory that is neither empty nor a microturn dataset is refused unless --overwrite; a lock file
  (`LOCK_FILE`, created exclusively: it also proves the directory writable) refuses a second job on the same output
  at once, naming the first one's process (a lock left by a dead process on this host is taken over).
- `release_output` removes the lock; `remove_work` removes only this job's work directories (``_work/<16 hex>``),
  never a user's ``_work`` contents; `remove_stale_shards` removes shards (and their index files) of an earlier run
  that the new manifest does not list.
- `disk_error` finds an out-of-space (or read-only file system) error behind a failed run, so that the job stops
  with that message instead of rejecting every input at write.
Local paths get all of this; on other file systems (gs://, s3://) there is no exclusive create, so no lock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import re
import socket
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems

from schemas import storage
from schemas.tables import INDEX_DIR, index_file_name

logger = logging.getLogger(__name__)

LOCK_FILE = ".microturn.lock"
GANDER_BUNDLES = "_gander_bundles"
"""Where `microturn run --input FILE.jsonl` puts the bundles it imports from a Gander file (microturn_cli)."""
OLD_INDEX_FILE = "index.parquet"
"""The one index file of a format-1 dataset (now: the INDEX_DIR directory)."""
OUR_FILES = frozenset(
    {INDEX_DIR, OLD_INDEX_FILE, "rejected.parquet", "manifest.json", "shards.txt", "_work", LOCK_FILE, GANDER_BUNDLES}
)
SHARD_FILE = re.compile(r"shard-\d+(_\d+)?\.tar$")
"""Shard names (schemas.shard.shard_name): shard-NNNNN.tar, and shard-NNNNN_SS.tar for a split bucket."""
WORK_SUBDIR = re.compile(r"[0-9a-f]{16}$")
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""OSError numbers that are the output's fault, not an input's: the job stops on them."""


class OutputError(ValueError):
    """--output cannot be used (a file, not ours, locked, not writable, out of space); the message says why."""


def _is_ours_name(name: str) -> bool:
    return name in OUR_FILES or name.startswith("shard-") or name.endswith(".partial")


def is_our_output(path: str) -> bool:
    """Whether the local directory `path` is empty or a microturn dataset: a manifest.json with our version fields,
    or nothing but names the job writes."""
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    try:
        with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        if isinstance(manifest, dict) and "manifest_version" in manifest and "format_version" in manifest:
            return True
    except (OSError, ValueError):
        pass
    return all(_is_ours_name(n) for n in names)


def _lock_owner(lock: str) -> dict:
    try:
        with open(lock, encoding="utf-8") as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_output(output: str, *, overwrite: bool = False) -> str | None:
    """Check and lock `output` before the job does any work; returns the lock file's path (None off local disk).

    Raises:
        OutputError: --output is a file, a non-empty directory that is not a microturn dataset (without
            `overwrite`), locked by a running job, or not writable.
    """
    output = output.rstrip("/") or "/"
    if "://" in output:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        return None
    if os.path.exists(output) and not os.path.isdir(output):
        raise OutputError(f"--output {output} is a file; give a directory")
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--output {output}: cannot create the directory: {e.strerror}") from None
    if not overwrite and not is_our_output(output):
        foreign = sorted(n for n in os.listdir(output) if not _is_ours_name(n))
        raise OutputError(
            f"--output {output} is not empty and is not a microturn dataset (it holds {', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}); give an empty or new directory, or pass --overwrite to write "
            "the dataset's files into it (other files are left alone)"
        )
    lock = os.path.join(output, LOCK_FILE)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            pid, host = owner.get("pid"), owner.get("host")
            if isinstance(pid, int) and host == socket.gethostname() and not _alive(pid):
                logger.warning("removing the stale lock %s of process %d, which no longer runs", lock, pid)
                os.unlink(lock)
                continue
            raise OutputError(
                f"--output {output} is in use by another microturn job (process {pid} on {host}; lock file {lock}); "
                "wait for it to finish, or delete the lock file if no job is running"
            ) from None
        except OSError as e:
            raise OutputError(f"--output {output} is not writable: {e.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            try:
                f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
                f.flush()
            except OSError as e:
                os.unlink(lock)
                raise OutputError(f"--output {output} is not writable: {e.strerror}") from None
        return lock
    raise OutputError(f"--output {output}: could not take the lock {lock}")


def release_output(lock: str | None) -> None:
    """Remove the lock `claim_output` took (if this process still owns it)."""
    if lock is None:
        return
    if _lock_owner(lock).get("pid") == os.getpid():
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass


def remove_work(output: str, work_name: str = "_work") -> None:
    """Remove the job's work directories ``_work/<16 hex digits>`` under `output`, then ``_work`` if it is empty;
    anything else in ``_work`` (not the job's) stays."""
    work = f"{output.rstrip('/')}/{work_name}"
    if "://" in work:
        storage.delete_dir(work)  # on an object store: every object under the prefix
        return
    if not os.path.isdir(work):
        return
    ours = [f"{work}/{n}" for n in os.listdir(work) if WORK_SUBDIR.match(n)]
    if ours:
        FileSystems.delete(ours)
    if not os.listdir(work):
        os.rmdir(work)
    else:
        logger.warning("left %s: it holds files that are not this job's", work)


def remove_stale_shards(output: str, listed: Iterable[str]) -> list[str]:
    """Delete the shard files (``shard-NNNNN.tar``, ``shard-NNNNN_SS.tar``) and per-shard index files
    (``index/shard-*.parquet``) in `output` that the manifest (shard names in `listed`) does not list, left by an
    earlier run with more or other shards, and the single ``index.parquet`` of a format-1 dataset; returns their
    names relative to `output`. Through schemas/storage.py, so on s3:// too."""
    output = output.rstrip("/")
    if not storage.dir_exists(output):
        return []
    keep = set(listed)
    keep_index = {index_file_name(n) for n in keep}
    stale = []
    for path in storage.list_files(f"{output}/shard-*.tar"):
        name = posixpath.basename(path)
        if SHARD_FILE.match(name) and name not in keep:
            stale.append((name, path))
    for path in storage.list_files(f"{output}/{INDEX_DIR}/shard-*.parquet"):
        name = f"{INDEX_DIR}/{posixpath.basename(path)}"
        if name not in keep_index:
            stale.append((name, path))
    stale += [(OLD_INDEX_FILE, path) for path in storage.list_files(f"{output}/{OLD_INDEX_FILE}")]
    storage.delete_files([path for _, path in stale])
    if stale:
        logger.warning("removed %d file(s) of an earlier run that this run's manifest does not list", len(stale))
    return sorted(name for name, _ in stale)


def disk_error(exc: BaseException) -> OSError | None:
    """The OSError with a `DISK_ERRNOS` number behind `exc` (its causes and contexts), or None. Beam may re-raise a
    worker's error as a new exception with the same text, so the text is checked too."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return e
        for code in DISK_ERRNOS:
            if os.strerror(code) in str(e):
                return OSError(code, os.strerror(code))
        e = e.__cause__ or e.__context__
    return None


def add_output_args(parser: object) -> None:
    """--overwrite on `microturn run`'s parser."""
    parser.add_argument(  # type: ignore[attr-defined]
        "--overwrite",
        action="store_true",
        help="write into an --output directory that is not empty and is not a microturn dataset (the dataset's "
        "files are written; other files are left alone)",
    )
