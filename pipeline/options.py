"""Options of the `microturn run` job: a Beam PipelineOptions subclass; Beam's own options pass through.

microturn run --help
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.align import AlignConfig
from pipeline.aligners import add_aligner_args, aligner_config
from pipeline.inputs.guard import add_input_guard_args
from pipeline.labels import LabelConfig
from pipeline.runner.output_guard import add_output_args
from pipeline.video import VideoConfig
from pipeline.windows import WindowConfig

_LABELS, _WINDOWS, _ALIGN, _VIDEO = LabelConfig(), WindowConfig(), AlignConfig(), VideoConfig()


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
    """What a sample holds: its length in micro-turns, its perspectives, its audio."""
    parser.add_argument(
        "--window_microturns",
        type=int,
        default=_WINDOWS.window_microturns,
        help="micro-turns per sample; one micro-turn is 200 ms (default 150 = 30 s)",
    )
    parser.add_argument(
        "--perspectives",
        choices=("all", "first"),
        default=_WINDOWS.perspectives,
        help="all: every speaker (allowed by the bundle's model_speakers) plays the model once; "
        "first: only the first one (default all)",
    )
    parser.add_argument(
        "--keep_audio", action="store_true", help="also store each sample's 16 kHz audio per stream as FLAC members"
    )


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
    """The stored video frames: size in pixels and JPEG quality."""
    parser.add_argument(
        "--video_width",
        type=int,
        default=_VIDEO.width,
        help="pixels: width frames are scaled (to cover) and centre-cropped to; a multiple of 40 (default 320)",
    )
    parser.add_argument(
        "--video_height",
        type=int,
        default=_VIDEO.height,
        help="pixels: frame height, a multiple of 40 (default 240; 320x240 = 8x6 patches)",
    )
    parser.add_argument(
        "--jpeg_quality",
        type=int,
        default=_VIDEO.jpeg_quality,
        help="JPEG quality 1-95 of stored frames (default 90)",
    )


def _add_label_args(parser: Any) -> None:
    """Turn-taking labels (utterances, backchannels; seconds and words) and the word-end guard of alignment."""
    parser.add_argument(
        "--ipu_gap_s",
        type=float,
        default=_LABELS.ipu_gap_s,
        help="seconds: a speaker's words closer than this form one utterance (default 0.3)",
    )
    parser.add_argument(
        "--backchannel_max_s",
        type=float,
        default=_LABELS.backchannel_max_s,
        help="seconds: longest utterance that can be a backchannel (default 1.0)",
    )
    parser.add_argument(
        "--backchannel_max_words",
        type=int,
        default=_LABELS.backchannel_max_words,
        help="words: most words in a backchannel (default 2)",
    )
    parser.add_argument(
        "--word_end_tolerance_s",
        type=float,
        default=_ALIGN.word_end_tolerance_s,
        help="seconds: words may end this far past the audio and are clipped; further: the "
        "input is rejected (default 0.05)",
    )


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
        add_input_guard_args(parser)
        add_output_args(parser)


def job_config(opts: MicroturnOptions) -> dict[str, Any]:
    """The configuration that decides the output bytes (hashed into the manifest and the work directory)."""
    if opts.num_shards is not None and opts.num_shards < 1:
        raise ValueError(f"--num_shards must be >= 1, got {opts.num_shards}")
    if not opts.shard_size_mb > 0:
        raise ValueError(f"--shard_size_mb must be > 0, got {opts.shard_size_mb}")
    labels = LabelConfig(
        ipu_gap_s=opts.ipu_gap_s,
        backchannel_max_s=opts.backchannel_max_s,
        backchannel_max_words=opts.backchannel_max_words,
    )
    windows = WindowConfig(
        window_microturns=opts.window_microturns, perspectives=opts.perspectives, keep_audio=opts.keep_audio
    )
    return {
        "grid": {"sample_rate_hz": 16000, "microturn_s": 0.2, "dmel": "DESIGN.md §3", "frames_per_microturn": 16},
        "labels": labels.to_dict(),
        "windows": asdict(windows),
        "align": asdict(
            AlignConfig(word_end_tolerance_s=opts.word_end_tolerance_s, refine_boundaries=not opts.no_refine_boundaries)
        ),
        "aligner": aligner_config(opts).to_dict(),
        "video": asdict(VideoConfig(width=opts.video_width, height=opts.video_height, jpeg_quality=opts.jpeg_quality)),
        "num_shards": opts.num_shards,
        "shard_size_mb": opts.shard_size_mb,
    }
