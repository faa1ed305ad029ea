"""Command-line flags derived from config dataclasses (schemas/config_flags.py), with argparse's own error for a bad
value and the older hyphenated spellings some commands still accept.

    python -c "from cli.flags import add_flags; from synth.cue import CueConfig; import argparse; \
p = argparse.ArgumentParser(); add_flags(p, CueConfig); print(p.parse_args(['--latency_s', '0.5']))"

The flags themselves (name, type, default, help from the field) are made by `schemas.config_flags`, which the job's
Beam options (pipeline/options.py) use too; as torchtitan's config manager and Lhotse's ``lhotse/bin/modes/`` do it,
the dataclasses stay plain data with their help in field metadata or a comment.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from schemas import config_flags
from schemas.config_flags import field_help, flag_values

__all__ = ["add_flags", "field_help", "flag_values"]


def add_flags(
    parser: argparse.ArgumentParser,
    config: Any,
    *,
    names: Sequence[str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    default_text: str | None = None,
    hyphen_spellings: bool = False,
) -> None:
    """Add one ``--<field>`` flag per field of the dataclass `config` (a class, or an instance whose values are the
    defaults); see `schemas.config_flags.flags` for `names`, `choices` and `default_text`.

    Args:
        hyphen_spellings: also accept ``--a-b`` for ``--a_b``, unlisted (the older spellings of some commands).
    """
    added = config_flags.add_flags(
        parser, config, names=names, choices=choices, default_text=default_text, type_error=argparse.ArgumentTypeError
    )
    for flag in added if hyphen_spellings else ():
        if "_" in flag.name:
            hidden = {**flag.kwargs, "dest": flag.name, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
            parser.add_argument(f"--{flag.name.replace('_', '-')}", **hidden)
