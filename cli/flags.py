"""Command-line flags derived from config dataclasses, so that each setting is written once: in its dataclass.

    python -c "from cli.flags import add_flags; from synth.cue import CueConfig; import argparse; \
p = argparse.ArgumentParser(); add_flags(p, CueConfig); print(p.parse_args(['--latency_s', '0.5']))"

A field ``latency_s: float = 0.3  # the model starts this long after the cue, seconds`` becomes the flag
``--latency_s`` of type float, default 0.3, whose help is the field's ``metadata["help"]`` or else the comment after
it on its line, followed by ``(default 0.3)``. Types: bool (``store_true``), int, float, str, ``Literal[...]``
(choices), ``tuple[T, T]`` (written ``LO,HI``) and ``T | None`` (as T). As torchtitan's config manager and Lhotse's
``lhotse/bin/modes/`` do it, the flags live here, beside the other command-line code; the dataclasses stay plain data.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

_COMMENTED_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(?:noqa[^ ]*\s*-?\s*)?(.+)$")


def field_help(cls: type) -> dict[str, str]:
    """Field name -> help text: ``metadata["help"]`` where given, else the comment after the field on its line."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins
        if dataclasses.is_dataclass(klass):
            try:
                source = inspect.getsource(klass)
            except (OSError, TypeError):  # defined where no source is kept (python -c): metadata only
                continue
            for line in source.splitlines():
                if m := _COMMENTED_FIELD.match(line):
                    comments[m.group(1)] = m.group(2).strip()
    out = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") or comments.get(f.name)
        if text:
            out[f.name] = text
    return out


def _pair(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, Any]]:
    def parse(text: str) -> tuple[Any, Any]:
        parts = text.split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}")
        try:
            return kind(parts[0]), kind(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected two {kind.__name__} values LO,HI, got {text!r}") from None

    return parse


def _argument(name: str, hint: Any) -> dict[str, Any]:
    """argparse keyword arguments (type, choices, action, metavar) for a field of type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        return _argument(name, next(a for a in args if a is not type(None)))
    if hint is bool:
        return {"action": "store_true"}
    if hint in (int, float, str):
        return {"type": hint}
    if origin is Literal:
        return {"type": type(args[0]), "choices": args}
    if origin is tuple and len(args) == 2 and args[0] is args[1] and args[0] in (int, float):
        return {"type": _pair(args[0]), "metavar": "LO,HI"}
    raise TypeError(f"field {name!r}: no flag for type {hint!r}; declare this flag by hand or leave the field out")


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
    defaults).

    Args:
        names: these fields only, in this order (default: every field, in declaration order).
        choices: field name -> allowed values, for fields whose type does not say them (not a Literal).
        default_text: when given, every flag defaults to None (not given) and its help ends with ``(default:
            <default_text>)``, for settings whose default comes from elsewhere (a preset, a checkpoint).
        hyphen_spellings: also accept ``--a-b`` for ``--a_b``, unlisted (the older spellings of some commands).
    """
    cls = config if isinstance(config, type) else type(config)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    for name in names if names is not None else list(fields):
        if name not in fields:
            raise ValueError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(fields)}")
        kwargs = _argument(name, hints[name])
        if choices and name in choices:
            kwargs["choices"] = tuple(choices[name])
        text = helps.get(name, name.replace("_", " ")).replace("%", "%%")
        if default_text is not None:
            default, shown = None, f" (default: {default_text})"
        else:
            f = fields[name]
            default = getattr(config, name) if not isinstance(config, type) else _class_default(f)
            shown = "" if kwargs.get("action") == "store_true" else " (default %(default)s)"
        if "metavar" in kwargs and default is not None:
            shown = f" (default {','.join(map(str, default))})"
        parser.add_argument(f"--{name}", default=default, help=text + shown, **kwargs)
        if hyphen_spellings and "_" in name:
            hidden = {"dest": name, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
            parser.add_argument(f"--{name.replace('_', '-')}", **hidden, **kwargs)


def _class_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def flag_values(config: Any, args: argparse.Namespace, *, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The values of `config`'s fields that `args` holds and that were given (not None): ready for
    ``dataclasses.replace(config, **...)`` or ``Config(**...)``."""
    cls = config if isinstance(config, type) else type(config)
    wanted = names if names is not None else [f.name for f in dataclasses.fields(cls)]
    return {n: getattr(args, n) for n in wanted if getattr(args, n, None) is not None}
