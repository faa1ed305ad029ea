"""The job's lock on --output: one job per output at a time, on a laptop and on a cluster.

    python -c "from pipeline.runner.output_lock import LEASE_S, RENEW_S; print(LEASE_S, RENEW_S)"

A lock is a small JSON file (`LOCK_FILE`) under the output naming its holder: ``{"pid", "host", "token",
"lease_s"}``. It is created exclusively: ``O_EXCL`` on a local (or shared) file system, a conditional put
(``If-None-Match: *``) on S3, so of two jobs started together exactly one gets it. While the job runs, a thread of
the launching process renews it every `RENEW_S` seconds (a new modification time: ``os.utime`` on a file, a put
with ``If-Match`` on the lock's ETag on S3, which fails if anyone replaced it).

A lock left behind by a job that died is taken over by the next one when

- its holder was a process of this host that no longer runs (known at once), or
- it was not renewed for `LEASE_S` seconds, whichever host held it: a killed launcher stops renewing, so after the
  lease a job on another machine may proceed. The age is the file system's (or the S3 server's) clock: the file's
  modification time against the time of a file written there now; the object's Last-Modified against the server's
  Date header, so the clocks of the machines never enter.

What it cannot know: a job whose launcher was killed while its workers go on writing (a runner that keeps a job
after the launcher is gone) is not seen after the lease; stop the job on the runner first. Object stores without
a conditional create (gs:// through Beam's FileSystems) get no lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field

from schemas import s3

logger = logging.getLogger(__name__)

LOCK_FILE = ".microturn.lock"
LEASE_S = 600.0
"""Seconds without renewal after which a lock counts as abandoned, whichever host wrote it."""
RENEW_S = 60.0
"""Seconds between two renewals of a held lock (a tenth of the lease: nine renewals may fail before it lapses)."""


class LockHeld(ValueError):
    """Another job holds the lock; the message names it and what to do."""


@dataclass
class OutputLock:
    """A lock this process holds: its path (file or s3:// URL) and the thread that renews it until `release`."""

    path: str
    token: str
    etag: str | None = None  # S3: the ETag of the lock object as this process last wrote it
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_renewing(self, every_s: float = RENEW_S) -> None:
        """Renew the lock every `every_s` seconds in a daemon thread until `release`."""
        self._thread = threading.Thread(target=self._renew_loop, args=(every_s,), name="microturn-lock", daemon=True)
        self._thread.start()

    def _renew_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                if not self.renew():
                    logger.error(
                        "the lock %s was taken over by another job; this job's output is not guarded", self.path
                    )
                    return
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried; the lease allows several
                logger.warning("could not renew the lock %s: %s", self.path, e)

    def renew(self) -> bool:
        """Give the lock a new modification time if this process still holds it; False when it does not."""
        if s3.is_s3(self.path):
            if self.etag is None:
                return False
            etag = s3.put_if_match(self.path, self.body(), self.etag)
            if etag is None:
                return False
            self.etag = etag
            return True
        if read_owner(self.path).get("token") != self.token:
            return False
        os.utime(self.path)
        return True

    def body(self) -> bytes:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token, "lease_s": LEASE_S}
        return json.dumps(owner).encode("utf-8")

    def release(self) -> None:
        """Stop renewing and remove the lock if this process still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if s3.is_s3(self.path):
            try:
                found = s3.get_object(self.path)
                if found and _owner(found[0]).get("token") == self.token:
                    s3.delete_if_match(self.path, found[1])
            except Exception as e:  # noqa: BLE001 - the job's outcome stands; the message says what to delete
                logger.warning("could not remove the lock object %s (%s); delete it before the next run", self.path, e)
            return
        if read_owner(self.path).get("token") == self.token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _owner(data: bytes) -> dict:
    try:
        owner = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def read_owner(path: str) -> dict:
    """The holder a lock file names ({} when unreadable)."""
    try:
        with open(path, "rb") as f:
            return _owner(f.read())
    except OSError:
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(owner: dict, age_s: float, lease_s: float) -> str | None:
    """Why a lock with this holder and age (seconds since its last renewal) may be taken over; None: it may not."""
    pid, host = owner.get("pid"), owner.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not _alive(pid):
        return f"process {pid} of this host no longer runs"
    if age_s > lease_s:
        return f"not renewed for {age_s:.0f} s (lease {lease_s:.0f} s)"
    return None


def _held(output: str, owner: dict, age_s: float, lease_s: float, what: str) -> LockHeld:
    return LockHeld(
        f"--output {output} is in use by another microturn job (process {owner.get('pid')} on {owner.get('host')}, "
        f"{what} renewed {age_s:.0f} s ago); wait for it to finish: a lock not renewed for {lease_s:.0f} s is taken "
        "over, or delete it if no job is running"
    )


def _file_age_s(path: str) -> float:
    """Seconds since `path` was last modified, on its file system's clock (a file written beside it now)."""
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), prefix=".microturn-clock-") as probe:
        now = os.fstat(probe.fileno()).st_mtime
    return now - os.stat(path).st_mtime


def take_local_lock(output: str, *, lease_s: float = LEASE_S) -> OutputLock:
    """Create `output`/LOCK_FILE exclusively (taking over an abandoned one).

    Raises:
        LockHeld: another job holds it. OSError: the directory is not writable.
    """
    path, token = os.path.join(output, LOCK_FILE), uuid.uuid4().hex
    lock = OutputLock(path=path, token=token)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner, age = read_owner(path), _file_age_s(path)
            why = _abandoned(owner, age, lease_s)
            if why is None:
                raise _held(output, owner, age, lease_s, f"lock file {path}") from None
            logger.warning("taking over the lock %s: %s", path, why)
            os.unlink(path)
            continue
        with os.fdopen(fd, "wb") as f:
            try:
                f.write(lock.body())
                f.flush()
            except OSError:
                os.unlink(path)
                raise
        return lock
    raise LockHeld(f"--output {output}: could not take the lock {path}")


def take_s3_lock(output: str, *, lease_s: float = LEASE_S) -> OutputLock:
    """Create the lock object `output`/LOCK_FILE with a conditional put (taking over an abandoned one).

    Raises:
        LockHeld: another job holds it; the store's own errors (no bucket, refused credentials) pass through.
    """
    path, token = f"{output}/{LOCK_FILE}", uuid.uuid4().hex
    lock = OutputLock(path=path, token=token)
    for _ in range(3):
        etag = s3.put_if_absent(path, lock.body())
        if etag is not None:
            lock.etag = etag
            return lock
        found = s3.get_aged(path)
        if found is None:
            continue  # released in between
        data, etag, age = found
        owner = _owner(data)
        why = _abandoned(owner, age, lease_s)
        if why is None:
            raise _held(output, owner, age, lease_s, f"lock object {path}")
        logger.warning("taking over the lock %s: %s", path, why)
        s3.delete_if_match(path, etag)
    raise LockHeld(f"--output {output}: could not take the lock {path}")


__all__ = [
    "LEASE_S",
    "LOCK_FILE",
    "RENEW_S",
    "LockHeld",
    "OutputLock",
    "read_owner",
    "take_local_lock",
    "take_s3_lock",
]
