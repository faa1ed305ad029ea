"""Command-line flags derived from config dataclasses, so that each setting is written once: in its dataclass.

    python -c "from schemas.config_flags import flags; from pipeline.video import VideoConfig; \
print([f.name for f in flags(VideoConfig)])"

A field ``gap_s: float = setting(0.3, "seconds: words closer than this form one utterance")`` becomes the flag
``--gap_s`` of type float, default 0.3, whose help is the field's ``metadata["help"]`` (or else the comment after the
field on its line), followed by ``(default 0.3)``. Types: bool (``store_true``; a bool whose default is True becomes
``--no_<field>``, which turns it off), int, float, str, ``Literal[...]`` (choices), ``tuple[T, T]`` (written
``LO,HI``) and ``T | None`` (as T). Metadata may also give ``flag`` (the flag's name where the field's own would be
ambiguous among a job's other flags, e.g. ``--video_width`` for ``VideoConfig.width``) and ``choices``.

Both the command line (cli/) and the job's Beam `PipelineOptions` (pipeline/options.py) build their flags here, so
it lives in the bottom layer; it imports no argparse (the library parses no command line): a parser is anything with
argparse's ``add_argument``, and the caller names the error a bad ``LO,HI`` value raises (argparse's
``ArgumentTypeError`` in cli/, whose text argparse then prints as it is).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

_COMMENTED_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(?:noqa[^ ]*\s*-?\s*)?(.+)$")


class Parser(Protocol):
    """What the flags are added to: an ``argparse.ArgumentParser`` (Beam's `PipelineOptions` hook gets one)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    """One generated flag: ``--<name>`` sets the dataclass field `field` (``not`` the flag's value where `negated`).
    `name` is also the attribute the parsed value is read from; `kwargs` are ``add_argument``'s keyword arguments."""

    field: str
    name: str
    negated: bool = False
    kwargs: Mapping[str, Any]


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: Sequence[Any] | None = None,  # noqa: A002
) -> Any:
    """A dataclass field with its command-line help (and, where needed, its flag's name and choices) in metadata."""
    meta: dict[str, Any] = {"help": help}
    if flag is not None:
        meta["flag"] = flag
    if choices is not None:
        meta["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=meta)


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


def _pair(kind: Callable[[str], Any], error: type[Exception]) -> Callable[[str], tuple[Any, Any]]:
    def parse(text: str) -> tuple[Any, Any]:
        parts = text.split(",")
        if len(parts) != 2:
            raise error(f"expected LO,HI, got {text!r}")
        try:
            return kind(parts[0]), kind(parts[1])
        except ValueError:
            raise error(f"expected two {kind.__name__} values LO,HI, got {text!r}") from None

    parse.__name__ = f"{kind.__name__} LO,HI"  # argparse's "invalid <name> value" where `error` is a ValueError
    return parse


def _argument(name: str, hint: Any, error: type[Exception]) -> dict[str, Any]:
    """``add_argument`` keyword arguments (type, choices, action, metavar) for a field of type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        return _argument(name, next(a for a in args if a is not type(None)), error)
    if hint is bool:
        return {"action": "store_true"}
    if hint in (int, float, str):
        return {"type": hint}
    if origin is Literal:
        return {"type": type(args[0]), "choices": args}
    if origin is tuple and len(args) == 2 and args[0] is args[1] and args[0] in (int, float):
        return {"type": _pair(args[0], error), "metavar": "LO,HI"}
    raise TypeError(f"field {name!r}: no flag for type {hint!r}; declare this flag by hand or leave the field out")


def _class_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def flags(
    config: Any,
    *,
    names: Sequence[str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    default_text: str | None = None,
    type_error: type[Exception] = ValueError,
) -> list[Flag]:
    """One `Flag` per field of the dataclass `config` (a class, or an instance whose values are the defaults).

    Args:
        names: these fields only, in this order (default: every field, in declaration order).
        choices: field name -> allowed values, for fields whose type and metadata do not say them.
        default_text: when given, every flag defaults to None (not given) and its help ends with ``(default:
            <default_text>)``, for settings whose default comes from elsewhere (a preset, a checkpoint).
        type_error: what a malformed ``LO,HI`` value raises (argparse's ``ArgumentTypeError`` keeps its message).
    """
    cls = config if isinstance(config, type) else type(config)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    out = []
    for name in names if names is not None else list(fields):
        if name not in fields:
            raise ValueError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(fields)}")
        f = fields[name]
        kwargs = _argument(name, hints[name], type_error)
        allowed = (choices or {}).get(name, f.metadata.get("choices"))
        if allowed is not None:
            kwargs["choices"] = tuple(allowed)
        text = helps.get(name, name.replace("_", " ")).replace("%", "%%")
        flag = f.metadata.get("flag", name)
        default = _class_default(f) if config is cls else getattr(config, name)
        negated = kwargs.get("action") == "store_true" and _class_default(f) is True
        if negated:  # a setting that is on unless turned off: --no_<field>
            flag, default, text = f"no_{flag}", not default, f"turn off: {text}"
        if default_text is not None:
            default, shown = None, f" (default: {default_text})"
        elif kwargs.get("action") == "store_true" or default is None or default == "":
            shown = ""
        elif "metavar" in kwargs:
            shown = f" (default {','.join(map(str, default))})"
        else:
            shown = " (default %(default)s)"
        kwargs.update(default=default, help=text + shown)
        out.append(Flag(field=name, name=flag, negated=negated, kwargs=kwargs))
    return out


def add_flags(parser: Parser, config: Any, **options: Any) -> list[Flag]:
    """Add one ``--<flag>`` per field of the dataclass `config` to `parser` (options: those of `flags`); the flags."""
    added = flags(config, **options)
    for flag in added:
        parser.add_argument(f"--{flag.name}", **flag.kwargs)
    return added


def flag_values(config: Any, args: Any, *, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The values of `config`'s fields that the parsed `args` (a Namespace, or Beam's `PipelineOptions`) hold and
    that were given (not None): ready for ``dataclasses.replace(config, **...)`` or ``Config(**...)``."""
    out = {}
    for flag in flags(config, names=names):
        value = getattr(args, flag.name, None)
        if value is not None:
            out[flag.field] = not value if flag.negated else value
    return out
