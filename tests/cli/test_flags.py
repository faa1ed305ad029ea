"""cli/flags.py: a config dataclass -> argparse flags -> the same dataclass back; each setting written once."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from cli.flags import add_flags, field_help, flag_values


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    rate_hz: int = 16000  # samples per second
    gap_s: float = 0.3  # seconds: words closer than this form one utterance
    name: str = "x"
    mode: Literal["all", "first"] = "all"  # which speakers play the model
    span_s: tuple[float, float] = (0.5, 1.5)  # a uniform range, seconds
    limit: int | None = None  # at most this many (default: no limit)
    keep_audio: bool = False  # also store the audio
    ratio: float = field(default=0.25, metadata={"help": "share of hours, 0..1 (from metadata)"})


def _parser(**kwargs: object) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t", exit_on_error=True)
    add_flags(p, Example, **kwargs)
    return p


def test_a_dataclass_round_trips_through_its_flags() -> None:
    argv = ["--rate_hz", "8000", "--gap_s", "0.5", "--name", "y", "--mode", "first", "--span_s", "1,2"]
    args = _parser().parse_args([*argv, "--limit", "3", "--keep_audio", "--ratio", "0.5"])
    got = Example(**flag_values(Example, args))
    want = Example(rate_hz=8000, gap_s=0.5, name="y", mode="first", span_s=(1.0, 2.0), limit=3, keep_audio=True)
    assert got == dataclasses.replace(want, ratio=0.5)
    assert Example(**flag_values(Example, _parser().parse_args([]))) == Example()  # no flags: the defaults


def test_help_comes_from_the_field_comment_or_metadata_with_the_default() -> None:
    text = _parser().format_help()
    assert "seconds: words closer than this form one utterance (default 0.3)" in " ".join(text.split())
    assert "share of hours, 0..1 (from metadata) (default 0.25)" in " ".join(text.split())
    assert "a uniform range, seconds (default 0.5,1.5)" in " ".join(text.split())
    assert field_help(Example)["rate_hz"] == "samples per second" and "name" not in field_help(Example)


def test_an_instance_gives_the_defaults_and_default_text_leaves_them_to_the_caller() -> None:
    p = argparse.ArgumentParser()
    add_flags(p, Example(gap_s=0.9), names=("gap_s",))
    assert p.parse_args([]).gap_s == 0.9
    p = argparse.ArgumentParser()
    add_flags(p, Example, names=("gap_s", "rate_hz"), default_text="preset's", hyphen_spellings=True)
    assert flag_values(Example, p.parse_args([])) == {}  # nothing given: the preset's values stay
    assert flag_values(Example, p.parse_args(["--rate-hz", "1"])) == {"rate_hz": 1}  # the older spelling, unlisted
    assert "--rate-hz" not in p.format_help() and "(default: preset's)" in p.format_help()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate_hz", "fast"], "argument --rate_hz: invalid int value: 'fast'"),
        (["--mode", "some"], "argument --mode: invalid choice: 'some'"),
        (["--span_s", "1"], "argument --span_s: expected LO,HI, got '1'"),
        (["--span_s", "a,b"], "argument --span_s: expected two float values LO,HI, got 'a,b'"),
    ],
)
def test_an_invalid_value_is_argparses_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_field_without_a_flag_type_or_a_wrong_name_fails_early() -> None:
    @dataclass
    class Odd:
        items: list[str] = field(default_factory=list)

    with pytest.raises(TypeError, match="field 'items': no flag for type"):
        add_flags(argparse.ArgumentParser(), Odd)
    with pytest.raises(ValueError, match="Example has no field 'nope'"):
        add_flags(argparse.ArgumentParser(), Example, names=("nope",))


def test_the_trainer_flags_are_its_config_fields() -> None:
    """`microturn train`'s settings of trainer.config come from the dataclasses: one flag per field named there."""
    from cli.train import config_from_args, train_parser
    from trainer.config import preset

    args = train_parser().parse_args(["--data", "d", "--out", "o", "--lr", "0.5", "--batch-size", "3", "--seed", "7"])
    cfg = config_from_args(args)
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.seed) == (0.5, 3, 7)
    assert cfg.model == preset("tiny").model and cfg.steps == preset("tiny").steps
    assert cfg.loss == preset("tiny").loss  # no speak head unless asked for
    head = config_from_args(train_parser().parse_args(["--data", "d", "--out", "o", "--speak_weight", "1"]))
    assert (head.loss.speak_weight, head.loss.speak_horizon, head.loss.flow_weight) == (1.0, 0, 1.0)
    with pytest.raises(ValueError, match="--grad_accum must be >= 1, got 0"):
        config_from_args(train_parser().parse_args(["--data", "d", "--out", "o", "--grad_accum", "0"]))
