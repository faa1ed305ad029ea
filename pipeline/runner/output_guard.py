"""The job's claim on --output: checked before any work, locked while the job runs, tidied after it.

    python -c "from pipeline.runner.output_guard import is_our_output; print(is_our_output('/nonexistent'))"

- `claim_output` (before any input is read): --output must not be a file; the directory is created if missing;
  a directory (or object-store prefix) that is neither empty nor a microturn dataset is refused unless --overwrite;
  a lock (pipeline/runner/output_lock.py: created exclusively, which also proves the output writable; renewed
  while the job runs; taken over when its process died on this host or it was not renewed for a lease) refuses a
  second job on the same output at once, naming the first one's process. On S3, once the lock is taken, the
  incomplete multipart uploads that killed runs left under the names the job writes are aborted (they are
  invisible, but kept and billed until aborted).
- `release_output` stops renewing and removes the lock; `remove_work` removes only the job's work directories
  (``_work/<16 hex>``), never a user's ``_work`` contents; `remove_stale_shards` removes the shards (and their
  index files) that an earlier run of the job wrote (`written_by_earlier_runs`: listed in its manifest, or with a
  sidecar in a work directory) and the new manifest does not list: never a file the job did not write, whatever its
  name.
- `disk_error` finds an out-of-space (or read-only file system) error behind a failed run, so that the job stops
  with that message instead of rejecting every input at write.
Local paths and s3:// get all of this; other object stores (gs://) get all but the lock (no conditional create
through Beam's FileSystems).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import re
from collections.abc import Iterable
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipeline.runner.output_lock import LOCK_FILE, LockHeld, OutputLock, take_local_lock, take_s3_lock
from schemas import s3, storage
from schemas.tables import INDEX_DIR, index_file_name

logger = logging.getLogger(__name__)

OLD_GANDER_BUNDLES = "_gander_bundles"
"""Where `microturn run --input FILE.jsonl` put the bundles it imported from a Gander file before the job read Gander
JSONL itself (pipeline/inputs/gander.py): still ours in an output made then."""
OLD_INDEX_FILE = "index.parquet"
"""The one index file of a format-1 dataset (now: the INDEX_DIR directory)."""
OUR_FILES = frozenset(
    {
        INDEX_DIR,
        OLD_INDEX_FILE,
        "rejected.parquet",
        "manifest.json",
        "shards.txt",
        "_work",
        LOCK_FILE,
        OLD_GANDER_BUNDLES,
    }
)
SHARD_FILE = re.compile(r"shard-\d+(_\d+)?\.tar$")
"""Shard names (schemas.shard.shard_name): shard-NNNNN.tar, and shard-NNNNN_SS.tar for a split bucket."""
WORK_SUBDIR = re.compile(r"[0-9a-f]{16}$")
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""OSError numbers that are the output's fault, not an input's: the job stops on them."""


class OutputError(ValueError):
    """--output cannot be used (a file, not ours, locked, not writable, out of space); the message says why."""


def _children(path: str) -> list[str]:
    """The names directly under the directory (or object-store prefix) `path`; [] when there is none."""
    if "://" not in path:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    if s3.is_s3(path):
        return [n.rstrip("/") for n in s3.list_children(path)]
    prefix = path.rstrip("/") + "/"
    return sorted({p[len(prefix) :].split("/", 1)[0] for p in storage.list_files(prefix + "**")})


def _work_dirs(output: str, work_name: str = "_work") -> list[str]:
    """The job's work directories (``<16 hex>``) under `output`/_work."""
    return [n for n in _children(f"{output.rstrip('/')}/{work_name}") if WORK_SUBDIR.match(n)]


def _our_manifest(path: str) -> dict[str, Any] | None:
    """`path`/manifest.json when it is a microturn manifest (it has our version fields), else None."""
    try:
        if "://" in path:
            manifest = storage.read_json(f"{path.rstrip('/')}/manifest.json")
        else:
            with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
                manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(manifest, dict) and "manifest_version" in manifest and "format_version" in manifest:
        return manifest
    return None


def _foreign_names(path: str) -> list[str]:
    """The names under `path` that a microturn dataset without its manifest would not hold: anything but the job's
    own names, and shards unless a work directory of the job's shows an interrupted run (another tool's
    ``shard-00000.tar`` files are not ours)."""
    names = _children(path)
    interrupted = "_work" in names and bool(_work_dirs(path))
    return [
        n
        for n in names
        if not (n in OUR_FILES or n.endswith(".partial") or (interrupted and SHARD_FILE.match(n) is not None))
    ]


def is_our_output(path: str) -> bool:
    """Whether the directory (or object-store prefix) `path` is empty or a microturn dataset: a manifest.json with
    our version fields, or nothing but names the job writes."""
    if "://" not in path and not os.path.isdir(path):
        return False
    return _our_manifest(path) is not None or not _foreign_names(path)


def _refuse_foreign(output: str) -> None:
    if _our_manifest(output) is not None:
        return
    foreign = _foreign_names(output)
    if foreign:
        raise OutputError(
            f"--output {output} is not empty and is not a microturn dataset (it holds {', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}); give an empty or new directory, or pass --overwrite to write "
            "the dataset's files into it (other files are left alone)"
        )


def claim_output(output: str, *, overwrite: bool = False) -> OutputLock | None:
    """Check and lock `output` before the job does any work; returns the lock, renewed until `release_output`
    (None on object stores other than S3).

    Raises:
        OutputError: --output is a file, a non-empty directory that is not a microturn dataset (without
            `overwrite`), locked by a running job, or not writable.
    """
    output = output.rstrip("/") or "/"
    if "://" in output:
        if not overwrite:
            try:
                _refuse_foreign(output)
            except OutputError:
                raise
            except Exception as e:  # noqa: BLE001 - the store's errors (refused credentials, no bucket) say why
                raise OutputError(f"--output {output}: cannot list it: {e}") from None
        if s3.is_s3(output):
            return _claim_s3(output)
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        return None
    if os.path.exists(output) and not os.path.isdir(output):
        raise OutputError(f"--output {output} is a file; give a directory")
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--output {output}: cannot create the directory: {e.strerror}") from None
    if not overwrite:
        _refuse_foreign(output)
    try:
        lock = take_local_lock(output)
    except LockHeld as e:
        raise OutputError(str(e)) from None
    except OSError as e:
        raise OutputError(f"--output {output} is not writable: {e.strerror}") from None
    lock.start_renewing()
    return lock


def _claim_s3(output: str) -> OutputLock:
    """The lock object of `output` (pipeline/runner/output_lock.py); then the earlier runs' incomplete uploads are
    aborted."""
    try:
        lock = take_s3_lock(output)
    except LockHeld as e:
        raise OutputError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the store's errors (refused credentials, no bucket) say why
        raise OutputError(f"--output {output} is not writable: {e}") from None
    lock.start_renewing()
    abort_incomplete_uploads(output)
    return lock


def _job_writes(name: str) -> bool:
    """Whether `name` (relative to --output) is a name the job writes."""
    if name in ("manifest.json", "rejected.parquet", OLD_INDEX_FILE) or SHARD_FILE.match(name):
        return True
    if name.startswith(f"{INDEX_DIR}/shard-") and name.endswith(".parquet") and name.count("/") == 1:
        return True
    head, _, rest = name.partition("/")
    work, _, _ = rest.partition("/")
    return head == "_work" and WORK_SUBDIR.match(work) is not None and rest != work


TEMPORARY = re.compile(r"(?P<dir>(?:[^/]+/)?)\.(?P<name>[^/]+)\.[0-9a-f]+\.partial$")
"""A temporary name of pipeline.write.temp_name: ``.NAME.<hex>.partial`` beside the file NAME."""


def is_job_temporary(name: str) -> bool:
    """Whether `name` (relative to --output) is a temporary name of a file the job writes."""
    m = TEMPORARY.match(name)
    return m is not None and _job_writes(m["dir"] + m["name"])


def abort_incomplete_uploads(output: str) -> int:
    """Abort the multipart uploads begun and never completed under the names the job writes in the S3 prefix
    `output` (left by killed runs; a running job of ours would hold the lock); returns how many."""
    bucket, prefix = s3.split_url(output.rstrip("/") + "/")
    aborted = 0
    for key, upload_id, _ in s3.incomplete_uploads(output.rstrip("/") + "/"):
        if _job_writes(key[len(prefix) :]):
            s3.abort_upload(bucket, key, upload_id)
            aborted += 1
    if aborted:
        logger.warning("aborted %d incomplete upload(s) that an earlier run left under %s", aborted, output)
    return aborted


def release_output(lock: OutputLock | None) -> None:
    """Stop renewing and remove the lock `claim_output` took (if this process still holds it)."""
    if lock is not None:
        lock.release()


def remove_work(output: str, work_name: str = "_work") -> None:
    """Remove the job's work directories ``_work/<16 hex digits>`` under `output`, then ``_work`` if it is empty;
    anything else in ``_work`` (not the job's) stays."""
    work = f"{output.rstrip('/')}/{work_name}"
    if "://" in work:  # on an object store: every object under each of the job's prefixes, nothing else
        for name in _work_dirs(output, work_name):
            storage.delete_dir(f"{work}/{name}")
        if [n for n in _children(work) if not WORK_SUBDIR.match(n)]:  # (a store may list emptied prefixes)
            logger.warning("left %s: it holds objects that are not this job's", work)
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


def written_by_earlier_runs(output: str) -> set[str]:
    """The files (names relative to `output`) that earlier runs of the job wrote and may have left: the shards (and
    index files) its manifest lists, a format-1 index.parquet beside that manifest, and the shards that interrupted
    runs finished (a sidecar in a work directory). Call it before the run writes its own manifest."""
    output = output.rstrip("/")
    shards: set[str] = set()
    manifest = _our_manifest(output)
    written: set[str] = set()
    if manifest is not None:
        written.add(OLD_INDEX_FILE)
        for entry in manifest.get("shards") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                shards.add(entry["name"])
    for work in _work_dirs(output):
        for path in storage.list_files(f"{output}/_work/{work}/shards/shard-*.json"):
            shards.add(posixpath.basename(path).removesuffix(".json"))
    for name in shards:
        if SHARD_FILE.match(name):
            written |= {name, index_file_name(name)}
    return written


def remove_stale_shards(output: str, listed: Iterable[str], earlier: Iterable[str]) -> list[str]:
    """Delete the files of `earlier` (`written_by_earlier_runs`, taken before this run) that the new manifest (shard
    names in `listed`) does not list, left by an earlier run with more or other shards: shard files, their index
    files, a format-1 ``index.parquet``. Returns their names relative to `output`. Through schemas/storage.py, so on
    s3:// too; a file the job did not write is never deleted, whatever its name."""
    output = output.rstrip("/")
    keep = set(listed)
    keep |= {index_file_name(n) for n in keep}
    candidates = set(earlier) - keep
    if not candidates or not storage.dir_exists(output):
        return []
    present = {posixpath.basename(p) for p in storage.list_files(f"{output}/shard-*.tar")}
    present |= {
        f"{INDEX_DIR}/{posixpath.basename(p)}" for p in storage.list_files(f"{output}/{INDEX_DIR}/shard-*.parquet")
    }
    present |= {OLD_INDEX_FILE for _ in storage.list_files(f"{output}/{OLD_INDEX_FILE}")}
    stale = sorted(candidates & present)
    storage.delete_files([f"{output}/{name}" for name in stale])
    if stale:
        logger.warning("removed %d file(s) of an earlier run that this run's manifest does not list", len(stale))
    return stale


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
