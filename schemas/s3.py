"""S3 at local speed: one boto3 client per process and per set of options, objects written once, and the few S3
calls Beam's file system has no words for (conditional put, incomplete multipart uploads).

    python -c "from schemas.s3 import is_s3, split_url; print(is_s3('s3://b/k'), split_url('s3://b/k/x'))"

- `install_shared_clients` makes Beam's S3 file system reuse clients: Beam builds a new boto3 session and client
  for every call (every exists, open, match, delete), which costs tens of milliseconds each (about 80 % of an S3
  run before this). Here `boto3_client.Client`, where Beam makes them, takes its boto3 client from `client_for`, a
  cache keyed by the S3 options and boto3's environment variables, per process (boto3 clients are thread-safe;
  sessions are not, so a lock guards creation). Each Beam `Client` keeps its own download state, as before.
- `ObjectWriter` writes an object directly, without a temporary name and a copy: the bytes are buffered and sent
  as one PUT (small objects) or as a multipart upload (parts of PART_BYTES); the object appears only when `close`
  completes it, and a failure (an exception inside ``with``, or `abort`) aborts the upload, so no reader ever sees
  a partial object and an existing object under that name stays until the new one is complete.
- `put_if_absent` (``If-None-Match: *``), `put_if_match` and `delete_if_match` (``If-Match: ETAG``), `get_aged`
  (on the server's clock) serve the output's lock (pipeline/runner/output_lock.py); `incomplete_uploads` and
  `abort_upload` its tidying (pipeline/runner/output_guard.py).
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from typing import Any

PART_BYTES = 8 << 20
"""Multipart part size (S3 wants at least 5 MiB for every part but the last)."""
ENV_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
"""boto3's environment variables that decide a client's endpoint and credentials: part of the cache key."""
OPTION_KEYS = (
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_session_token",
    "s3_endpoint_url",
    "s3_region_name",
    "s3_api_version",
    "s3_verify",
    "s3_disable_ssl",
)

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def is_s3(path: str) -> bool:
    return path.startswith("s3://")


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; the key may be empty.

    Raises:
        ValueError: `url` is not an s3:// URL with a bucket.
    """
    if not is_s3(url) or not url[5:].split("/", 1)[0]:
        raise ValueError(f"{url}: not an s3://bucket/... URL")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


_last_options: list[Any] = [None, None]
"""(options, their values): view_as parses the flags again at every call, and Beam passes the same object."""


def _option_values(options: Any) -> dict[str, Any]:
    """The S3 options of `options` (PipelineOptions, a dict, or None), as Beam's boto3 client reads them."""
    if options is None:
        return dict.fromkeys(OPTION_KEYS)
    if isinstance(options, dict):
        return {k: options.get(k) for k in OPTION_KEYS}
    last, values = _last_options
    if last is options:
        return values
    from apache_beam.options.pipeline_options import S3Options

    s3 = options.view_as(S3Options)
    values = {k: getattr(s3, k, None) for k in OPTION_KEYS}
    _last_options[:] = [options, values]
    return values


def client_for(options: Any = None) -> Any:
    """The boto3 S3 client of this process for `options` (None: boto3's own chain alone), created once: the same
    options and AWS_* environment give the same client."""
    values = _option_values(options)
    env = {k: os.environ.get(k) for k in ENV_KEYS}
    key = hashlib.sha256(repr((os.getpid(), sorted(values.items()), sorted(env.items()))).encode()).hexdigest()
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            import boto3

            session = boto3.session.Session()
            client = session.client(  # the arguments Beam's boto3_client.Client gives
                service_name="s3",
                region_name=values["s3_region_name"],
                api_version=values["s3_api_version"],
                use_ssl=not values["s3_disable_ssl"],
                verify=values["s3_verify"],
                endpoint_url=values["s3_endpoint_url"],
                aws_access_key_id=values["s3_access_key_id"],
                aws_secret_access_key=values["s3_secret_access_key"],
                aws_session_token=values["s3_session_token"],
            )
            _clients[key] = client
    return client


def clients_created() -> int:
    """How many boto3 clients this process has made through `client_for` (tests, benchmarks)."""
    return len(_clients)


def install_shared_clients() -> None:
    """Make Beam's S3 file system take its boto3 clients from `client_for` (idempotent)."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    if getattr(boto3_client.Client, "_microturn_shared", False):
        return

    class SharedClient(boto3_client.Client):
        """Beam's boto3 wrapper over this process's shared boto3 client (its download state stays its own)."""

        _microturn_shared = True

        def __init__(self, options: Any) -> None:  # noqa: D107 - Beam's signature
            self.client = client_for(options)
            self._download_request = None
            self._download_stream = None
            self._download_pos = 0

    boto3_client.Client = SharedClient  # type: ignore[misc]


def current_client() -> Any:
    """The shared client for the options Beam's FileSystems has in this process."""
    from apache_beam.io.filesystems import FileSystems

    return client_for(FileSystems._pipeline_options)


class ObjectWriter(io.RawIOBase):
    """A write-only binary stream to ``s3://bucket/key`` that becomes the object only when `close` completes it
    (module docstring); `abort` (or an exception inside ``with``) discards it."""

    def __init__(self, url: str, client: Any = None) -> None:
        super().__init__()
        self.url = url
        self.bucket, self.key = split_url(url)
        self.client = client if client is not None else current_client()
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError(f"{self.url}: write to a closed object writer")
        n = len(memoryview(data).cast("B"))
        self.buffer += data
        self.position += n
        while len(self.buffer) >= PART_BYTES:
            self._upload_part(bytes(self.buffer[:PART_BYTES]))
            del self.buffer[:PART_BYTES]
        return n

    def _upload_part(self, data: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        number = len(self.parts) + 1
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self.parts.append({"ETag": response["ETag"], "PartNumber": number})

    def close(self) -> None:
        """Complete the object (one PUT, or the multipart upload's last part and completion)."""
        if self.closed:
            return
        try:
            if self.upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
            else:
                if self.buffer or not self.parts:
                    self._upload_part(bytes(self.buffer))
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
                )
        except BaseException:
            self.abort()
            raise
        self.buffer = bytearray()
        super().close()

    def abort(self) -> None:
        """Discard what was written: nothing appears under the name (an existing object stays as it was)."""
        if self.closed:
            return
        self.buffer = bytearray()
        upload, self.upload_id = self.upload_id, None
        super().close()
        if upload is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload)
            except Exception:  # noqa: BLE001 - best effort: a rerun aborts the job's incomplete uploads
                pass

    def __del__(self) -> None:  # IOBase's would close, i.e. complete: an abandoned writer is a failed one
        if not self.closed:
            self.abort()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def _error_code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _conditional_put(url: str, data: bytes, refused: tuple[str, ...], **condition: str) -> str | None:
    """put_object with a precondition (IfNoneMatch / IfMatch): the new ETag, or None when the server refuses it
    with one of the `refused` error codes."""
    bucket, key = split_url(url)
    try:
        response = current_client().put_object(Bucket=bucket, Key=key, Body=data, **condition)
    except Exception as e:
        if _error_code(e) in refused:
            return None
        raise
    return str(response["ETag"])


def put_if_absent(url: str, data: bytes) -> str | None:
    """Create the object `url` with `data` only if no object has that name (``If-None-Match: *``, atomic on the
    server); its ETag, or None when one exists."""
    return _conditional_put(url, data, ("PreconditionFailed", "ConditionalRequestConflict", "412"), IfNoneMatch="*")


def put_if_match(url: str, data: bytes, etag: str) -> str | None:
    """Replace the object `url` with `data` only if its ETag is still `etag` (``If-Match``); the new ETag, or None
    when it changed or is gone."""
    refused = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412")
    return _conditional_put(url, data, refused, IfMatch=etag)


def _get(url: str) -> Any | None:
    """The get_object response of `url`, or None when there is no such object."""
    bucket, key = split_url(url)
    try:
        return current_client().get_object(Bucket=bucket, Key=key)
    except Exception as e:
        if _error_code(e) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def get_object(url: str) -> tuple[bytes, str] | None:
    """(bytes, ETag) of the object `url`, or None when there is none."""
    response = _get(url)
    return None if response is None else (response["Body"].read(), response["ETag"])


def get_aged(url: str) -> tuple[bytes, str, float] | None:
    """(bytes, ETag, seconds since the object `url` was last written) in one request, the age on the server's clock
    (its Date header against the object's Last-Modified, whole seconds); None when there is none."""
    response = _get(url)
    if response is None:
        return None
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    now = email.utils.parsedate_to_datetime(date) if date else datetime.datetime.now(datetime.timezone.utc)
    return response["Body"].read(), response["ETag"], (now - response["LastModified"]).total_seconds()


def delete_if_match(url: str, etag: str) -> bool:
    """Delete the object `url` only if its ETag is still `etag` (``If-Match``); False when it changed or is gone."""
    bucket, key = split_url(url)
    try:
        current_client().delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except Exception as e:
        if _error_code(e) in ("PreconditionFailed", "NoSuchKey", "404", "412"):
            return False
        raise
    return True


def incomplete_uploads(prefix_url: str) -> Iterator[tuple[str, str, Any]]:
    """(key, upload id, initiated datetime) of every multipart upload begun and neither completed nor aborted under
    the prefix ``s3://bucket/prefix``."""
    bucket, prefix = split_url(prefix_url)
    client = current_client()
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = client.list_multipart_uploads(**kwargs)
        for upload in page.get("Uploads") or []:
            yield upload["Key"], upload["UploadId"], upload.get("Initiated")
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"], kwargs["UploadIdMarker"] = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")


def abort_upload(bucket: str, key: str, upload_id: str) -> None:
    current_client().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def list_children(url: str) -> list[str]:
    """The names directly under the "directory" `url` (``s3://bucket/prefix``): objects by name, deeper prefixes as
    ``name/``; one request per 1,000 names however many objects lie deeper (a delimiter listing)."""
    bucket, prefix = split_url(url.rstrip("/") + "/")
    client = current_client()
    names: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    while True:
        page = client.list_objects_v2(**kwargs)
        names += [o["Key"][len(prefix) :] for o in page.get("Contents") or []]
        names += [c["Prefix"][len(prefix) :] for c in page.get("CommonPrefixes") or []]
        if not page.get("IsTruncated"):
            return sorted(n for n in names if n)
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
