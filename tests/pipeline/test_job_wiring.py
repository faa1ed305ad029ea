"""The job's wiring on Beam's TestPipeline (FnApiRunner, no Prism): what reaches each named PCollection of build()."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from pipeline.job import WORK_DIR, build, run
from pipeline.options import MicroturnOptions, job_config
from pipeline.read import list_inputs
from pipeline.runner.runners import local_runner

from ..factories import make_bundle

SHARD = "shard-00000.tar"
INDEX = "index/shard-00000.parquet"
SAMPLES = 2 * 3  # 2.0 s = 10 micro-turns -> 3 windows of 4, two perspectives
REJECTED = [
    ("badjson", "read", "malformed_json", None),
    ("late", "align", "words_past_end", "late"),
    ("truncated", "decode", "truncated_wav", "truncated"),
]


def _inputs(root: Path) -> None:
    """One good bundle and three bad ones, each failing at a different stage."""
    make_bundle(root / "good", conv_id="good", seconds=2.0)
    make_bundle(root / "badjson", conv_id="badjson")
    (root / "badjson" / "bundle.json").write_text('{"id": "badjson", "tracks": [')
    make_bundle(root / "truncated", conv_id="truncated")
    (root / "truncated" / "A.wav").write_bytes((root / "truncated" / "A.wav").read_bytes()[:20_000])
    make_bundle(root / "late", conv_id="late", words=[{"text": "late", "start": 2.5, "end": 3.6, "speaker": "A"}])


def _argv(tmp_path: Path) -> list[str]:
    return [
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--window_microturns",
        "4",
        "--num_shards",
        "1",
    ]


def _test_pipeline(options: PipelineOptions) -> BeamTestPipeline:
    return BeamTestPipeline(runner=local_runner(options), options=options)


def _shards_written_to(output: str) -> Callable[[Sequence[dict[str, Any]]], None]:
    """A matcher: one shard summary of SAMPLES samples whose sha256 and size are those of the file on disk, and
    whose index file holds its rows with strictly increasing offsets."""

    def match(shards: Sequence[dict[str, Any]]) -> None:
        if [(s["name"], s["samples"], s["index"]) for s in shards] != [(SHARD, SAMPLES, INDEX)]:
            raise BeamAssertException(f"unexpected shards {[(s['name'], s['samples']) for s in shards]}")
        data = Path(posixpath.join(output, SHARD)).read_bytes()
        if (shards[0]["sha256"], shards[0]["size_bytes"]) != (hashlib.sha256(data).hexdigest(), len(data)):
            raise BeamAssertException("the shard summary does not describe the shard file")
        rows = pq.read_table(posixpath.join(output, INDEX)).to_pylist()
        if len(rows) != SAMPLES or {r["shard"] for r in rows} != {SHARD}:
            raise BeamAssertException("the shard's index file does not hold its rows")
        at = {(r["key"], r["offset"]) for r in rows}  # format 3: a window's perspectives share its offset
        offsets = [o for _, o in at]
        if len(at) != len({k for k, _ in at}) or len(offsets) != len(set(offsets)):
            raise BeamAssertException("offsets are not distinct")

    return match


def _build_and_check(tmp_path: Path, *, reused: bool) -> dict[str, Any]:
    options = PipelineOptions(_argv(tmp_path))
    opts = options.view_as(MicroturnOptions)
    output = opts.output
    Path(output).mkdir(exist_ok=True)
    p = _test_pipeline(options)
    pcolls = build(p, opts, list_inputs(opts.input), job_config(opts))
    good = [("good", SAMPLES)]
    assert_that(
        pcolls["parts"] | "PartFacts" >> beam.Map(lambda part: (part.conversation_id, part.samples)),
        equal_to([] if reused else good),
        label="CheckParts",
    )
    assert_that(
        pcolls["reused"] | "ReusedFacts" >> beam.Map(lambda part: (part.conversation_id, part.samples)),
        equal_to(good if reused else []),
        label="CheckReused",
    )
    assert_that(
        pcolls["rejected"]
        | "RejectedFacts"
        >> beam.Map(lambda r: (posixpath.basename(posixpath.dirname(r.input)), r.stage, r.kind, r.conversation_id)),
        equal_to(REJECTED),
        label="CheckRejected",
    )
    assert_that(pcolls["shards"], _shards_written_to(output), label="CheckShards")
    assert_that(
        pcolls["manifest"]
        | "ManifestFacts"
        >> beam.Map(
            lambda m: (
                m["counts"]["inputs"],
                m["counts"]["conversations_written"],
                m["counts"]["rejected"],
                m["counts"]["samples"],
                tuple(s["name"] for s in m["shards"]),
            )
        ),
        equal_to([(4, 1, 3, SAMPLES, (SHARD,))]),
        label="CheckManifest",
    )
    p.run()
    return {
        "index": (tmp_path / "out" / INDEX).read_bytes(),
        "shard": (tmp_path / "out" / SHARD).read_bytes(),
    }


def test_build_routes_each_input_to_parts_shards_and_rejected(tmp_path: Path) -> None:
    _inputs(tmp_path / "in")
    first = _build_and_check(tmp_path, reused=False)
    assert (tmp_path / "out" / WORK_DIR).is_dir()  # build() leaves the work directory; run() removes it
    second = _build_and_check(tmp_path, reused=True)  # the finished part and shard of the first run are reused
    assert second == first


def test_a_failing_assertion_fails_the_test_pipeline(tmp_path: Path) -> None:
    """The checks above can fail: a wrong expectation on the rejected output makes the run raise."""
    _inputs(tmp_path / "in")
    options = PipelineOptions(_argv(tmp_path))
    opts = options.view_as(MicroturnOptions)
    Path(opts.output).mkdir()
    p = _test_pipeline(options)
    pcolls = build(p, opts, list_inputs(opts.input), job_config(opts))
    assert_that(pcolls["rejected"] | beam.Map(lambda r: r.stage), equal_to(["read"]), label="WrongExpectation")
    with pytest.raises(BeamAssertException, match=r"unexpected elements .*'(align|decode)'"):
        p.run()


def test_run_accepts_a_test_pipeline(tmp_path: Path) -> None:
    _inputs(tmp_path / "in")
    options = PipelineOptions(_argv(tmp_path))
    manifest = run(_argv(tmp_path), test_pipeline=_test_pipeline(options))
    assert (manifest["counts"]["conversations_written"], manifest["counts"]["rejected"]) == (1, 3)
    assert not (tmp_path / "out" / WORK_DIR).exists()
