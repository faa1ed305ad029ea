"""Issue 20.5: each of `microturn run`'s settings of a config dataclass is written once, in its field: the job's flag
is generated from it (name, default, type, help), and `job_config` reads the dataclass back from the parsed flags."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import asdict

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import JOB_CONFIGS, MicroturnOptions, job_config
from schemas.config_flags import field_help, flags

REQUIRED = ["--input", "in", "--output", "out"]


def _job_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    MicroturnOptions._add_argparse_args(parser)
    return parser


def _field_default(f: dataclasses.Field) -> object:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


@pytest.mark.parametrize("config", JOB_CONFIGS, ids=lambda c: c.__name__)
def test_every_field_of_a_job_config_is_exactly_one_flag_with_the_fields_default(config: type) -> None:
    actions = [a for a in _job_parser()._actions if a.option_strings]
    generated = {flag.field: flag for flag in flags(config)}
    helps = field_help(config)
    for f in dataclasses.fields(config):
        flag = generated[f.name]
        matching = [a for a in actions if f"--{flag.name}" in a.option_strings]
        assert len(matching) == 1, (config.__name__, f.name, flag.name)
        (action,) = matching
        assert action.dest == flag.name and action.option_strings == [f"--{flag.name}"]
        default = _field_default(f)
        assert action.default == (not default if flag.negated else default), (f.name, action.default)
        assert f.name in helps and helps[f.name].replace("%", "%%") in action.help  # the field's help, one home
    assert len(generated) == len(dataclasses.fields(config))


def test_no_flag_is_declared_twice() -> None:
    names = [s for a in _job_parser()._actions for s in a.option_strings]
    assert len(names) == len(set(names))


def test_microturn_run_help_lists_every_config_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.run import cmd_run

    assert cmd_run(["--help"]) == 0
    text = capsys.readouterr().out
    for config in JOB_CONFIGS:
        for flag in flags(config):
            assert f"--{flag.name} " in text or f"--{flag.name}\n" in text, flag.name
    squeezed = " ".join(text.split())
    assert "seconds: a speaker's words closer than this form one utterance (default 0.3)" in squeezed
    assert "{all,first}" in text and "{none,whisperx,faster-whisper,pocketsphinx}" in text


def test_without_flags_the_job_config_holds_the_dataclass_defaults() -> None:
    config = job_config(PipelineOptions(REQUIRED).view_as(MicroturnOptions))
    from pipeline.align import AlignConfig
    from pipeline.aligners import AlignerConfig
    from pipeline.labels import LabelConfig
    from pipeline.video import VideoConfig
    from pipeline.windows import WindowConfig

    assert config["labels"] == LabelConfig().to_dict() and config["windows"] == asdict(WindowConfig())
    assert config["align"] == asdict(AlignConfig()) and config["video"] == asdict(VideoConfig())
    assert config["aligner"] == AlignerConfig().to_dict()


def test_flags_set_their_fields_also_after_a_workers_reparse() -> None:
    """What a portable runner's worker does: options sent as a dict and parsed again give the same configuration."""
    argv = [
        *REQUIRED,
        *("--window_microturns", "100", "--perspectives", "first", "--keep_audio"),
        *("--video_width", "400", "--video_height", "280", "--jpeg_quality", "70"),
        *("--ipu_gap_s", "0.5", "--backchannel_max_s", "1.5", "--backchannel_max_words", "3"),
        *("--word_end_tolerance_s", "0.1", "--no_refine_boundaries"),
        *("--align_language", "de", "--compute_type", "float32", "--align_batch_size", "2"),
        *("--align_device", "cuda", "--whisper_beam_size", "3"),
    ]
    opts = PipelineOptions(argv).view_as(MicroturnOptions)
    config = job_config(opts)
    assert config["windows"] == {"window_microturns": 100, "perspectives": "first", "keep_audio": True}
    assert config["video"] == {"width": 400, "height": 280, "jpeg_quality": 70}
    assert config["labels"] == {"ipu_gap_s": 0.5, "backchannel_max_s": 1.5, "backchannel_max_words": 3}
    assert config["align"] == {"word_end_tolerance_s": 0.1, "refine_boundaries": False}
    aligner = config["aligner"]
    assert (aligner["language"], aligner["compute_type"], aligner["batch_size"]) == ("de", "float32", 2)
    assert (aligner["device"], aligner["beam_size"], aligner["backend"]) == ("cuda", 3, "none")
    worker = PipelineOptions.from_dictionary(opts.get_all_options()).view_as(MicroturnOptions)
    assert job_config(worker) == config


def test_a_value_outside_a_fields_choices_is_refused() -> None:
    with pytest.raises(SystemExit):
        _job_parser().parse_args([*REQUIRED, "--perspectives", "some"])
