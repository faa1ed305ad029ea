"""The S3 flags every command takes (``--s3_endpoint_url``, ``--s3_access_key_id``, ``--s3_secret_access_key``, as
Beam's; schemas.storage.S3_OPTIONS), pointed at Beam's FileSystems by `schemas.storage.configure`.

    microturn validate s3://bucket/dataset --s3_endpoint_url http://127.0.0.1:8333
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_storage_args(parser: argparse.ArgumentParser) -> None:
    """Add --s3_endpoint_url, --s3_access_key_id and --s3_secret_access_key (schemas.storage.S3_OPTIONS)."""
    parser.add_argument(
        "--s3_endpoint_url",
        default=None,
        help="S3 endpoint for s3:// paths, e.g. http://127.0.0.1:8333 (default: $AWS_ENDPOINT_URL_S3 or AWS)",
    )
    parser.add_argument("--s3_access_key_id", default=None, help="S3 access key (default: $AWS_ACCESS_KEY_ID)")
    parser.add_argument("--s3_secret_access_key", default=None, help="S3 secret key (default: $AWS_SECRET_ACCESS_KEY)")


def configure_from_args(args: argparse.Namespace) -> None:
    """`schemas.storage.configure` from the flags of `add_storage_args`."""
    from schemas.storage import S3_OPTIONS, configure

    flags = []
    for name in S3_OPTIONS:
        value = getattr(args, name, None)
        if value:
            flags += [f"--{name}", str(value)]
    configure(flags)


def pop_storage_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split `argv` into (the S3 flags with their values, the rest), for commands that pass their own arguments
    on unparsed; accepts ``--flag value`` and ``--flag=value``."""
    from schemas.storage import S3_OPTIONS

    storage, rest = [], []
    it = iter(argv)
    for arg in it:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and name[2:] in S3_OPTIONS:
            if "=" in arg:
                storage.append(arg)
            else:
                storage += [arg, next(it, "")]
        else:
            rest.append(arg)
    return storage, rest
