"""Options of the `microturn run` job: a Beam PipelineOptions subclass; Beam's own options pass through.

microturn run --help

A flag that sets a field of a config dataclass (`JOB_CONFIGS`) is made from that field (schemas/config_flags.py):
its name, default, type and help are written once, in the dataclass; `job_config` reads the dataclasses back. The
flags of no dataclass field (--input, --output, --shard_size_mb, ...) are declared here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.align import AlignConfig
from pipeline.aligners import AlignerConfig, add_aligner_args, aligner_config
from pipeline.inputs.guard import add_input_guard_args
from pipeline.labels import LabelConfig
from pipeline.runner.output_guard import add_output_args
from pipeline.video import VideoConfig
from pipeline.windows import WindowConfig
from schemas.config_flags import add_flags, flag_values

JOB_CONFIGS = (LabelConfig, WindowConfig, AlignConfig, VideoConfig, AlignerConfig)
"""The config dataclasses whose every field is one of the job's flags (schemas/config_flags.py)."""


def _add_dataset_args(parser: Any) -> None:
    """Where the job reads and writes: --input, --output and how the output is cut into shards."""
    parser.add_argument(
        "--input",
        required=True,
        help="a directory of bundles (bundle.json per conversation, moshi-finetune X.wav + X.json "
        "pairs, or directories of per-speaker audio files), a .jsonl manifest of bundles, or a Gander interaction "
        ".jsonl (one conversation of turns per line; paths relative to its directory)",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="dataset directory (local or any Beam file system); shards, index/, "
        "manifest.json and rejected.parquet go here; rerun the same command to resume",
    )
    parser.add_argument(
        "--shard_size_mb",
        type=float,
        default=512.0,
        help="target shard size in MB (10^6 bytes of tar); the number of shards follows from the total size "
        "of the samples, a conversation's shard from a stable hash of its id; samples and conversations stay "
        "whole, so only a conversation bigger than the target makes a bigger shard (default 512)",
    )
    parser.add_argument(
        "--num_shards",
        type=int,
        default=None,
        help="fix the number of shards instead (a conversation's shard: a stable hash of its id modulo this; "
        "shard sizes then grow with the corpus); default: derived from --shard_size_mb",
    )


def _add_sample_args(parser: Any) -> None:
    """What a sample holds: its length in micro-turns, its perspectives, its audio (`WindowConfig`)."""
    add_flags(parser, WindowConfig)


def _add_worker_args(parser: Any) -> None:
    """How the job runs: its work directory, torch and per-stream threads."""
    parser.add_argument(
        "--keep_work",
        action="store_true",
        help="keep the work directory (finished parts) after a successful run; an interrupted "
        "run always keeps it so that a rerun resumes",
    )
    parser.add_argument(
        "--torch_threads",
        type=int,
        default=1,
        help="torch threads per worker for resampling and dMel (default 1: with N worker "
        "processes, one thread each uses N cores without the threads fighting; 0 = torch's "
        "default)",
    )
    parser.add_argument(
        "--stream_threads",
        type=int,
        default=0,
        help="threads per worker for a conversation's per-stream work (resampling, dMel), each stream on one "
        "thread: outputs are identical for any value (default 0 = auto: every core for Beam's one in-process "
        "worker, the cores divided among local worker processes, 1 on other runners)",
    )


def _add_video_args(parser: Any) -> None:
    """The stored video frames: size in pixels and JPEG quality (`VideoConfig`)."""
    add_flags(parser, VideoConfig)


def _add_label_args(parser: Any) -> None:
    """Turn-taking labels (`LabelConfig`: utterances, backchannels) and the word-end guard of alignment."""
    add_flags(parser, LabelConfig)
    add_flags(parser, AlignConfig, names=("word_end_tolerance_s",))


class MicroturnOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        """The job's flags, by topic (Beam's hook; Beam's own options pass through)."""
        _add_dataset_args(parser)
        _add_sample_args(parser)
        _add_worker_args(parser)
        _add_video_args(parser)
        _add_label_args(parser)
        parser.add_argument(
            "--no_progress",
            action="store_true",
            help="no progress bar (conversations done/total, hours, x real time, ETA); it is shown only when stderr "
            "is a terminal and the job runs on the local runner",
        )
        add_aligner_args(parser)
        add_flags(parser, AlignConfig, names=("refine_boundaries",))
        add_input_guard_args(parser)
        add_output_args(parser)


def job_config(opts: MicroturnOptions) -> dict[str, Any]:
    """The configuration that decides the output bytes (hashed into the manifest and the work directory)."""
    if opts.num_shards is not None and opts.num_shards < 1:
        raise ValueError(f"--num_shards must be >= 1, got {opts.num_shards}")
    if not opts.shard_size_mb > 0:
        raise ValueError(f"--shard_size_mb must be > 0, got {opts.shard_size_mb}")
    return {
        "grid": {"sample_rate_hz": 16000, "microturn_s": 0.2, "dmel": "DESIGN.md §3", "frames_per_microturn": 16},
        "labels": LabelConfig(**flag_values(LabelConfig, opts)).to_dict(),
        "windows": asdict(WindowConfig(**flag_values(WindowConfig, opts))),
        "align": asdict(AlignConfig(**flag_values(AlignConfig, opts))),
        "aligner": aligner_config(opts).to_dict(),
        "video": asdict(VideoConfig(**flag_values(VideoConfig, opts))),
        "num_shards": opts.num_shards,
        "shard_size_mb": opts.shard_size_mb,
    }
