"""Issue 23.1-2 on a real SeaweedFS: an S3 output gets the local guarantees (a foreign prefix refused unless
--overwrite, a lock object, no object the job did not write deleted, the incomplete uploads of killed runs
aborted), objects are written once (no copy) and only when complete, and one boto3 client serves a process."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from pipeline.job import run
from pipeline.runner.output_guard import LOCK_FILE, OutputError, claim_output, release_output
from schemas import s3, storage
from schemas.validate import validate

from ..factories import make_bundle
from ..s3_server import S3Server


@pytest.fixture(scope="module")
def s3_inputs(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> str:
    root = tmp_path_factory.mktemp("guard")
    for i in range(2):
        make_bundle(root / "in" / f"c{i}", conv_id=f"c{i}", seconds=2.0)
    return s3_server.upload_tree(root / "in", "guard/in")


def _prefix() -> str:
    return f"guard/out-{uuid.uuid4().hex[:8]}"


def _keys(s3_server: S3Server, prefix: str) -> list[str]:
    return sorted(s3_server.download_tree(prefix))


def _argv(s3_server: S3Server, s3_inputs: str, prefix: str, *more: str) -> list[str]:
    return ["--input", s3_inputs, "--output", f"s3://{s3_server.bucket}/{prefix}", *more, *s3_server.beam_args()]


def test_users_objects_survive_and_a_foreign_prefix_needs_overwrite(s3_server: S3Server, s3_inputs: str) -> None:
    prefix, client, bucket = _prefix(), s3_server.client(), s3_server.bucket
    mine = {"shard-00042.tar": b"another tool's shard", "_work/mine.txt": b"my notes"}
    for key, body in mine.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)
    with pytest.raises(OutputError, match="not a microturn dataset"):
        run(_argv(s3_server, s3_inputs, prefix, "--num_shards", "1"))
    assert _keys(s3_server, prefix) == sorted(mine)  # refused before writing anything, even a lock
    for _ in range(2):  # the second run: resume over our own dataset, stale-shard removal included
        manifest = run(_argv(s3_server, s3_inputs, prefix, "--num_shards", "1", "--overwrite"))
        assert manifest["counts"]["conversations_written"] == 2
    objects = s3_server.download_tree(prefix)
    assert {k: objects[k] for k in mine} == mine
    assert LOCK_FILE not in objects and not [k for k in objects if k.startswith("_work/") and k != "_work/mine.txt"]
    assert validate(f"s3://{bucket}/{prefix}").ok


def test_stale_shards_of_an_earlier_run_go_and_nothing_else(s3_server: S3Server, s3_inputs: str) -> None:
    prefix, client, bucket = _prefix(), s3_server.client(), s3_server.bucket
    first = run(_argv(s3_server, s3_inputs, prefix, "--num_shards", "8"))
    assert [s["name"] for s in first["shards"]] == ["shard-00003.tar"]  # both conversations hash to bucket 3 of 8
    client.put_object(Bucket=bucket, Key=f"{prefix}/shard-00042.tar", Body=b"a user's, added later")
    second = run(_argv(s3_server, s3_inputs, prefix, "--num_shards", "1"))
    shards = [k for k in _keys(s3_server, prefix) if k.startswith("shard-")]
    assert shards == ["shard-00000.tar", "shard-00042.tar"] and [s["name"] for s in second["shards"]] == shards[:1]
    assert [k for k in _keys(s3_server, prefix) if k.startswith("index/")] == ["index/shard-00000.parquet"]


def test_a_second_job_is_refused_by_the_lock_object(s3_server: S3Server, s3_inputs: str) -> None:
    prefix = _prefix()
    output = f"s3://{s3_server.bucket}/{prefix}"
    storage.configure(s3_server.beam_args(), export=False)
    lock = claim_output(output)  # this process holds it, as a running job would
    try:
        assert lock is not None and lock.path == f"{output}/{LOCK_FILE}"
        with pytest.raises(OutputError, match="in use by another microturn job"):
            claim_output(output)  # the conditional put is refused: the lock exists
        with pytest.raises(OutputError, match="in use by another microturn job"):
            run(_argv(s3_server, s3_inputs, prefix))
        assert _keys(s3_server, prefix) == [LOCK_FILE]  # the refused job neither removed the lock nor wrote
    finally:
        release_output(lock)
    assert _keys(s3_server, prefix) == []
    # a lock left by a dead process of this host is taken over; another host's is respected
    client, bucket = s3_server.client(), s3_server.bucket
    dead = {"pid": 2**22 + 12345, "host": socket.gethostname()}
    client.put_object(Bucket=bucket, Key=f"{prefix}/{LOCK_FILE}", Body=json.dumps(dead).encode())
    assert run(_argv(s3_server, s3_inputs, prefix))["counts"]["conversations_written"] == 2
    assert LOCK_FILE not in _keys(s3_server, prefix)
    other = {"pid": 1, "host": "another-host"}
    client.put_object(Bucket=bucket, Key=f"{prefix}/{LOCK_FILE}", Body=json.dumps(other).encode())
    with pytest.raises(OutputError, match="process 1 on another-host"):
        run(_argv(s3_server, s3_inputs, prefix))


def test_incomplete_uploads_of_a_killed_run_are_aborted_on_rerun(s3_server: S3Server, s3_inputs: str) -> None:
    prefix, client, bucket = _prefix(), s3_server.client(), s3_server.bucket
    ours = [
        f"{prefix}/shard-00000.tar",
        f"{prefix}/_work/0123456789abcdef/parts/c0.tar",
        f"{prefix}/index/shard-00001.parquet",
    ]
    theirs = f"{prefix}/uploads/big.bin"  # not a name the job writes: a user's upload in progress
    for key in [*ours, theirs]:  # what a run killed half-way through its writes leaves
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    run(_argv(s3_server, s3_inputs, prefix, "--overwrite"))
    left = client.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/").get("Uploads") or []
    assert [u["Key"] for u in left] == [theirs]


def test_a_failed_write_leaves_no_object_and_no_upload(s3_server: S3Server) -> None:
    storage.configure(s3_server.beam_args(), export=False)
    client, bucket, key = s3_server.client(), s3_server.bucket, f"{_prefix()}/shard-00000.tar"
    client.put_object(Bucket=bucket, Key=key, Body=b"the finished shard of an earlier run")
    with pytest.raises(RuntimeError, match="half-way"):
        with s3.ObjectWriter(f"s3://{bucket}/{key}") as f:
            f.write(b"y" * (s3.PART_BYTES + 1000))  # one part uploaded: a multipart upload is under way
            raise RuntimeError("failed half-way")
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"the finished shard of an earlier run"
    assert not client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads")
    with s3.ObjectWriter(f"s3://{bucket}/{key}") as f:
        for _ in range(3):
            f.write(b"z" * (s3.PART_BYTES // 2 + 1))
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"z" * (3 * (s3.PART_BYTES // 2 + 1))


def test_one_client_per_process_and_no_copies(s3_server: S3Server, s3_inputs: str) -> None:
    """Beam's S3 file system built a boto3 client per call (171 for 8 conversations) and wrote every file twice
    (a temporary object, then a copy): now the job's process makes at most one client and never copies."""
    storage.configure(s3_server.beam_args(), export=False)
    calls: list[str] = []
    s3.current_client().meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    before = s3.clients_created()
    run(_argv(s3_server, s3_inputs, _prefix()))
    assert s3.clients_created() - before <= 1
    assert "CopyObject" not in calls and "UploadPartCopy" not in calls
    assert len(calls) < 100, sorted(calls)  # some 15 requests per conversation and 40 per job (66 here)
