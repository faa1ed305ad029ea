"""The output's lock (pipeline/runner/output_lock.py): renewed while held, taken over from any host once it lapses,
never removed or renewed by a job that lost it; on a local directory and on a real SeaweedFS."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from pipeline.runner.output_lock import LOCK_FILE, LockHeld, take_local_lock, take_s3_lock
from schemas import s3, storage

from ...s3_server import S3Server

OTHER = {"pid": 1, "host": "another-host", "token": "theirs"}


def _foreign_lock(path: Path, age_s: float) -> None:
    path.write_text(json.dumps(OTHER))
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_another_hosts_fresh_lock_is_respected(tmp_path: Path) -> None:
    _foreign_lock(tmp_path / LOCK_FILE, age_s=30)
    with pytest.raises(LockHeld, match=r"process 1 on another-host, lock file .* renewed 30 s ago"):
        take_local_lock(str(tmp_path), lease_s=600)
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == OTHER  # left as it was


def test_another_hosts_lapsed_lock_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _foreign_lock(tmp_path / LOCK_FILE, age_s=700)
    lock = take_local_lock(str(tmp_path), lease_s=600)
    owner = json.loads((tmp_path / LOCK_FILE).read_text())
    assert owner["host"] == socket.gethostname() and owner["pid"] == os.getpid() and owner["token"] == lock.token
    assert "not renewed for 700 s" in caplog.text
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_held_lock_is_renewed_and_a_lost_one_is_left_alone(tmp_path: Path) -> None:
    lock = take_local_lock(str(tmp_path))
    path = tmp_path / LOCK_FILE
    os.utime(path, (time.time() - 500, time.time() - 500))
    lock.start_renewing(every_s=0.05)
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 5  # renewed by the thread
    path.write_text(json.dumps(OTHER))  # another job took it over (after a lapse)
    assert lock.renew() is False
    lock.release()
    assert json.loads(path.read_text()) == OTHER  # not removed: it is not ours any more


def test_s3_lock_lapses_on_the_servers_clock_and_renews_with_if_match(s3_server: S3Server) -> None:
    storage.configure(s3_server.beam_args(), export=False)
    output = f"s3://{s3_server.bucket}/lock-{uuid.uuid4().hex[:8]}"
    url = f"{output}/{LOCK_FILE}"
    assert s3.put_if_absent(url, json.dumps(OTHER).encode()) is not None
    with pytest.raises(LockHeld, match="process 1 on another-host, lock object"):
        take_s3_lock(output, lease_s=600)
    time.sleep(2.2)  # Last-Modified has whole seconds
    lock = take_s3_lock(output, lease_s=1)  # lapsed: taken over, whichever host wrote it
    found = s3.get_object(url)
    assert found is not None and json.loads(found[0])["token"] == lock.token
    time.sleep(1.2)
    age_before = s3.get_aged(url)
    assert lock.renew() is True
    age_after = s3.get_aged(url)
    assert age_before is not None and age_after is not None and age_after[2] < age_before[2]
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=url.split("/", 3)[3], Body=json.dumps(OTHER).encode())
    assert lock.renew() is False  # replaced by another job: If-Match refuses, nothing overwritten
    lock.release()
    found = s3.get_object(url)
    assert found is not None and json.loads(found[0]) == OTHER
