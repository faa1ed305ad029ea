"""Paths through Beam's FileSystems (local, s3://, gs://, ...): open, read, stage to a local file, directory checks,
and the S3 options every tool takes (their flags: cli/storage.py).

    python -c "from schemas.storage import read_bytes; print(len(read_bytes('pyproject.toml')))"

S3 options come from the same three flags as Beam's (``--s3_endpoint_url``, ``--s3_access_key_id``,
``--s3_secret_access_key``; `configure`) or, when a flag is not given, from boto3's own environment variables
(``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). `configure`
also exports the flags it is given as those variables, so that worker processes (data loaders) see them.

Object stores have no directories: a "directory" exists when an object lies under its prefix, and is deleted by
deleting every object under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from schemas.s3 import install_shared_clients

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

S3_OPTIONS = {
    # Beam's option name -> the environment variable boto3 reads when the option is not given
    "s3_endpoint_url": "AWS_ENDPOINT_URL_S3",
    "s3_access_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}
COPY_CHUNK_BYTES = 8 << 20


def _filesystems() -> Any:
    """Beam's FileSystems, imported on first use: readers of local datasets (the trainer's data-loader workers)
    never load Beam."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def is_local(path: str) -> bool:
    """True for a plain path (or file://), False for a URL another Beam file system serves (s3://, gs://)."""
    return "://" not in path or path.startswith("file://")


def configure(options: PipelineOptions | Sequence[str] | None = None, *, export: bool = True) -> None:
    """Point Beam's FileSystems (in this process) at `options` (PipelineOptions or Beam flags; S3 options are what
    matter here); with `export`, the S3 options given are also set as boto3's environment variables."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    if options is None or not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options or []))
    install_shared_clients()  # Beam's S3 file system: one boto3 client per process and options (schemas/s3.py)
    FileSystems.set_options(options)
    if export:
        s3 = options.view_as(S3Options)  # not get_all_options: it would parse every options class loaded (--input)
        for name, env in S3_OPTIONS.items():
            if getattr(s3, name, None):
                os.environ[env] = str(getattr(s3, name))


def _ensure_configured() -> None:
    if getattr(_filesystems(), "_pipeline_options", None) is None:  # Beam's S3 file system needs options to start
        configure(export=False)


def open_read(path: str) -> BinaryIO:
    """A binary reader over `path`, never decompressed (a .tar.gz stays bytes).

    Raises:
        OSError: the file cannot be opened (FileNotFoundError when it does not exist); an object store's own errors
        (refused credentials, missing object) are raised as OSError naming the path too.
    """
    _ensure_configured()
    try:
        return _filesystems().open(path, mime_type="application/octet-stream", compression_type="uncompressed")
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - Beam's S3/GCS client errors are not OSErrors; callers expect one
        code = getattr(e, "code", None)
        error = FileNotFoundError if code == 404 else OSError
        raise error(f"{path}: cannot open: {e}") from e


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path).decode("utf-8"))


def exists(path: str) -> bool:
    """True when `path` is a file (or a local directory)."""
    _ensure_configured()
    return _filesystems().exists(path)


def size(path: str) -> int:
    """Bytes in the file `path` (local or on an object store).

    Raises:
        FileNotFoundError: when there is no such file.
    """
    _ensure_configured()
    found = _filesystems().match([path], limits=[1])[0].metadata_list
    if not found:
        raise FileNotFoundError(f"no such file: {path}")
    return found[0].size_in_bytes


def dir_exists(path: str) -> bool:
    """True when `path` is a local directory or, on an object store, when any object lies under `path`/."""
    _ensure_configured()
    if is_local(path):
        return _filesystems().exists(path)
    root = path.rstrip("/")
    if _filesystems().exists(root):
        return True
    return bool(_filesystems().match([root + "/**"], limits=[1])[0].metadata_list)


def list_files(pattern: str) -> list[str]:
    """The files matching the glob `pattern` (``*`` stays within one directory level), sorted; [] when none
    (also when the directory does not exist)."""
    _ensure_configured()
    found = _filesystems().match([pattern])[0].metadata_list
    return sorted(m.path for m in found)


def delete_files(paths: Sequence[str]) -> None:
    """Delete the files `paths` (local or on an object store)."""
    if paths:
        _ensure_configured()
        _filesystems().delete(list(paths))


def delete_dir(path: str) -> None:
    """Delete the directory `path` and everything under it; nothing happens when it does not exist."""
    _ensure_configured()
    if is_local(path):
        if _filesystems().exists(path):
            _filesystems().delete([path])
    elif dir_exists(path):
        _filesystems().delete([path.rstrip("/") + "/"])


@contextlib.contextmanager
def staged(path: str) -> Iterator[str]:
    """A local path with the bytes of `path`: `path` itself when it is local, else a temporary copy (same file
    name, streamed in chunks) that is removed on exit. For tools that only open local files (ffmpeg)."""
    if is_local(path):
        yield path.removeprefix("file://")
        return
    tmp_dir = tempfile.mkdtemp(prefix="microturn-stage-")
    local = os.path.join(tmp_dir, posixpath.basename(path.rstrip("/")) or "staged")
    try:
        with open_read(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)
        yield local
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _gopen_filesystems(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> BinaryIO:
    if mode != "rb":
        raise ValueError(f"{url}: only reading is supported through Beam's FileSystems here")
    return open_read(url)


def register_webdataset_schemes(schemes: Sequence[str] = ("s3",)) -> None:
    """Let webdataset open `schemes` URLs (shards on S3) through Beam's FileSystems, streamed."""
    import importlib

    gopen = importlib.import_module("webdataset.gopen")  # the module (the package's `gopen` is the function)
    for scheme in schemes:
        gopen.gopen_schemes[scheme] = _gopen_filesystems
