"""schemas/config_flags.py: a config dataclass -> flags on any parser -> the same dataclass back (the parser of
cli/ and the one Beam hands the job's PipelineOptions)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import pytest

from schemas.config_flags import add_flags, field_help, flag_values, flags, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    width: int = setting(320, "pixels: frame width", flag="video_width")
    mode: str = setting("all", "who plays the model", choices=("all", "first"))
    refine: bool = setting(True, "snap word edges to the energy")
    model: str = setting("", "local model directory")
    span_s: tuple[float, float] = setting((0.5, 1.5), "a range, seconds")
    plain: int = 3  # help from the comment


class Recorder:
    """A parser that only records what it is asked to add (as any object with `add_argument` may be given)."""

    def __init__(self) -> None:
        self.added: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        self.added.append((args, kwargs))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_flags(p, Settings)
    return p


def test_metadata_names_the_flag_its_choices_and_help() -> None:
    by_field = {f.field: f for f in flags(Settings)}
    assert [f.name for f in flags(Settings)] == ["video_width", "mode", "no_refine", "model", "span_s", "plain"]
    assert by_field["mode"].kwargs["choices"] == ("all", "first")
    assert field_help(Settings) == {
        "width": "pixels: frame width",
        "mode": "who plays the model",
        "refine": "snap word edges to the energy",
        "model": "local model directory",
        "span_s": "a range, seconds",
        "plain": "help from the comment",
    }
    recorder = Recorder()
    add_flags(recorder, Settings, names=("width",))
    assert recorder.added == [(("--video_width",), by_field["width"].kwargs)]


def test_a_true_bool_is_turned_off_by_its_no_flag_and_values_come_back_by_field() -> None:
    args = _parser().parse_args(["--video_width", "400", "--no_refine", "--span_s", "1,2", "--mode", "first"])
    got = Settings(**flag_values(Settings, args))
    assert got == Settings(width=400, refine=False, span_s=(1.0, 2.0), mode="first")
    assert Settings(**flag_values(Settings, _parser().parse_args([]))) == Settings()


def test_help_shows_the_default_except_for_flags_and_empty_strings() -> None:
    text = " ".join(_parser().format_help().split())
    assert "pixels: frame width (default 320)" in text and "a range, seconds (default 0.5,1.5)" in text
    assert "turn off: snap word edges to the energy" in text and "local model directory (default" not in text


def test_a_bad_pair_raises_the_callers_error() -> None:
    (span,) = flags(Settings, names=("span_s",))
    with pytest.raises(ValueError, match="expected LO,HI, got '1'"):
        span.kwargs["type"]("1")
    (span,) = flags(Settings, names=("span_s",), type_error=argparse.ArgumentTypeError)
    with pytest.raises(argparse.ArgumentTypeError, match="expected two float values LO,HI, got 'a,b'"):
        span.kwargs["type"]("a,b")
