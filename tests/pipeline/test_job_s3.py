"""The job on object storage: inputs (WAV, FLAC, ffmpeg-decoded Ogg, a video, a moshi pair), work directory, resume,
shards and tables on s3:// of a real SeaweedFS server; output equal to a local run; the reader, validate and the
CLI read it back from S3."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import microturn_cli
from pipeline.job import run
from schemas import storage
from schemas.reader import iter_samples
from schemas.tables import index_file_name
from schemas.validate import validate

from ..factories import make_bundle, tone
from ..s3_server import S3Server

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--window_microturns", "8", "--num_shards", "2"]


def _inputs(root: Path) -> Path:
    """One input of each kind the job reads from a store: WAV, FLAC, Ogg (ffmpeg), an MP4 with its own audio (moov
    atom at the end: it must be staged, not piped), and a moshi pair."""
    make_bundle(root / "wav", conv_id="wav", seconds=2.0)
    make_bundle(root / "flac", conv_id="flac", seconds=2.1, rate=22_050, fmt="flac")
    make_bundle(root / "ogg", conv_id="ogg", seconds=2.3, rate=24_000, fmt="ogg")
    video = root / "video"
    video.mkdir()
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=2",
            "-f",
            "lavfi",
            "-i",
            "sine=f=300:d=2:sample_rate=16000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
            str(video / "clip.mp4"),
        ],
        check=True,
    )
    (video / "bundle.json").write_text(
        json.dumps(
            {
                "id": "video",
                "video": "clip.mp4",
                "source": "test",
                "licence": "CC0-1.0",
                "words": [{"text": "hello", "start": 0.2, "end": 0.6, "speaker": "user"}],
            }
        )
    )
    moshi = root / "moshi"
    moshi.mkdir()
    sf.write(moshi / "talk.wav", np.stack([tone(2.0), tone(2.0, freq=500)], axis=1), 24_000)
    (moshi / "talk.json").write_text(
        json.dumps({"alignments": [["hello", [0.1, 0.5], "SPEAKER_MAIN"], ["yes", [0.9, 1.2], "SPEAKER_0"]]})
    )
    return root


def _local_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> dict:
    """The same inputs run once locally and once from S3 to S3 (with --keep_work)."""
    root = tmp_path_factory.mktemp("s3job")
    local_in = _inputs(root / "in")
    s3_in = s3_server.upload_tree(local_in, "job/in")
    local_manifest = run(["--input", str(local_in), "--output", str(root / "out"), *OPTIONS])
    s3_manifest = run(
        [
            "--input",
            s3_in,
            "--output",
            f"s3://{s3_server.bucket}/job/out",
            "--keep_work",
            *OPTIONS,
            *s3_server.beam_args(),
        ]
    )
    return {"root": root, "local_in": str(local_in), "s3_in": s3_in, "local": local_manifest, "s3": s3_manifest}


def test_s3_output_equals_the_local_run_byte_for_byte(runs: dict, s3_server: S3Server) -> None:
    assert runs["local"]["counts"] == runs["s3"]["counts"]
    assert runs["s3"]["counts"]["conversations_written"] == 5 and runs["s3"]["counts"]["rejected"] == 0
    local = _local_files(runs["root"] / "out")
    remote = {k: v for k, v in s3_server.download_tree("job/out").items() if not k.startswith("_work/")}
    assert sorted(remote) == sorted(local)
    for name, data in local.items():
        if name == "manifest.json":
            # the one difference: the manifest names the video's input path, which is s3://... on the S3 run
            data = data.replace(runs["local_in"].encode(), runs["s3_in"].encode())
        assert remote[name] == data, f"{name} differs between the local and the S3 run"
    assert runs["s3"]["video"][0]["path"] == f"{runs['s3_in']}/video/clip.mp4"  # not the staged temporary copy


def test_resume_on_s3_reuses_finished_parts_and_shards(
    runs: dict, s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    client, bucket = s3_server.client(), s3_server.bucket
    before = s3_server.download_tree("job/out")
    shards = sorted(k for k in before if k.startswith("shard-"))
    assert len(shards) == 2 and any(k.startswith("_work/") and k.endswith(".tar") for k in before)
    # an interrupted run: one shard and the tables never written
    for name in (shards[0], index_file_name(shards[0]), "manifest.json", "rejected.parquet"):
        client.delete_object(Bucket=bucket, Key=f"job/out/{name}")
    with caplog.at_level(logging.INFO, logger="pipeline.job"):
        run(["--input", runs["s3_in"], "--output", f"s3://{bucket}/job/out", *OPTIONS, *s3_server.beam_args()])
    assert "resumed 5 finished conversation(s) and 1 finished shard(s)" in caplog.text
    after = s3_server.download_tree("job/out")
    assert not [k for k in after if k.startswith("_work/")], "the work directory is deleted after a finished run"
    assert after == {k: v for k, v in before.items() if not k.startswith("_work/")}


def test_reader_validate_and_cli_read_the_dataset_back_from_s3(
    runs: dict, s3_server: S3Server, capsys: pytest.CaptureFixture
) -> None:
    dataset = f"s3://{s3_server.bucket}/job/out"
    keys = [s["__key__"] for s in iter_samples(dataset)]
    local_keys = [s["__key__"] for s in iter_samples(str(runs["root"] / "out"))]
    assert keys == local_keys and len(keys) == runs["s3"]["counts"]["samples"]
    report = validate(dataset)
    assert report.ok and report.samples_checked == len(keys), report.render()
    assert microturn_cli.main(["validate", dataset, *s3_server.beam_args()]) == 0
    assert f"OK: {len(keys)} samples checked" in capsys.readouterr().out
    # wrong credentials are refused by the server, not silently read
    assert (
        microturn_cli.main(
            [
                "validate",
                dataset,
                "--s3_endpoint_url",
                s3_server.endpoint,
                "--s3_access_key_id",
                "nobody",
                "--s3_secret_access_key",
                "wrong",
            ]
        )
        == 1
    )
    assert "cannot read" in capsys.readouterr().out
    html = runs["root"] / "report.html"
    assert microturn_cli.main(["report", dataset, "--out", str(html), *s3_server.beam_args()]) == 0
    assert html.stat().st_size > 0
    storage.configure(s3_server.beam_args(), export=False)
    # a separate process without flags: boto3's environment variables are used
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    png = runs["root"] / "sample.png"
    proc = subprocess.run(
        [sys.executable, "-m", "microturn_cli", "inspect", dataset, keys[0], "--out", str(png)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0 and png.stat().st_size > 0, proc.stdout + proc.stderr


def test_trainer_reads_the_dataset_from_s3(runs: dict, s3_server: S3Server, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the S3 flags are taken out of the passthrough command's arguments; one DataLoader worker process reads S3 too
    assert (
        microturn_cli.main(
            [
                "train",
                "--data",
                f"s3://{s3_server.bucket}/job/out",
                "--out",
                str(out),
                "--config",
                "tiny",
                "--steps",
                "2",
                "--num_workers",
                "1",
                "--moe_impl",
                "loop",
                "--no_progress",
                "--device",
                "cpu",
                *s3_server.beam_args(),
            ]
        )
        == 0
    )
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 1 and (out / "checkpoint.pt").exists()
