"""Issue 23.3-4: the job graph a runner receives (`pipeline.to_runner_api()`, what runners show and stage) holds no
S3 credentials, and its size does not grow with the number of inputs (the workers list them)."""

from __future__ import annotations

import base64
import bz2
import json
import re
import zlib
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.job import build
from pipeline.options import MicroturnOptions, job_config

from ..factories import make_bundle

SECRET = "graph-test-SECRET-4f0c2d"
KEY_ID = "graph-test-KEYID-91ab"
ENDPOINT = "http://127.0.0.1:9"


def _graph(argv: list[str]) -> bytes:
    """The serialised job graph of `microturn run argv` (built as run() builds it; not run)."""
    options = PipelineOptions(argv)
    opts = options.view_as(MicroturnOptions)
    p = beam.Pipeline(options=options)
    build(p, opts, None, job_config(opts))
    return p.to_runner_api().SerializeToString()


def _unpacked(graph: bytes) -> bytes:
    """`graph` plus every pickled payload in it decompressed (Beam pickles DoFns, coders and combiners as base64 of
    bz2 or zlib), so that a string in any of them can be found."""
    out = [graph]
    for m in re.finditer(rb"[A-Za-z0-9+/]{32,}={0,2}", graph):
        try:
            raw = base64.b64decode(m.group(0))
            out.append(bz2.decompress(raw) if raw[:3] == b"BZh" else zlib.decompress(raw))
        except (ValueError, OSError, zlib.error):
            continue
    return b"\n".join(out)


def test_the_graph_holds_no_s3_credentials(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "c0", conv_id="c0")
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    s3 = ["--s3_endpoint_url", ENDPOINT, "--s3_access_key_id", KEY_ID, "--s3_secret_access_key", SECRET]
    graph = _unpacked(_graph([*argv, *s3, "--s3_session_token", SECRET + "-token"]))
    assert ENDPOINT.encode() in graph  # the search reaches into the pickled DoFns: they carry the endpoint
    assert SECRET.encode() not in graph and KEY_ID.encode() not in graph


def test_the_graph_size_does_not_depend_on_the_number_of_inputs(tmp_path: Path) -> None:
    """10 and 10,000 inputs, as a JSONL manifest (the graph used to embed every line) and as a directory: the same
    graph size."""
    line = json.dumps({"id": "c", "tracks": [{"speaker": "A", "path": "a.wav"}], "words": [{"text": "x" * 400}]})
    sizes = {}
    for n in (10, 10_000):
        manifest = tmp_path / f"m{n:05d}" / "bundles.jsonl"  # paths of one length
        manifest.parent.mkdir()
        manifest.write_text("".join(line.replace('"c"', f'"c{i:05d}"') + "\n" for i in range(n)))
        sizes[("jsonl", n)] = len(_graph(["--input", str(manifest), "--output", str(tmp_path / "out")]))
        directory = tmp_path / f"d{n:05d}"
        for i in range(n):
            (directory / f"c{i:05d}").mkdir(parents=True)
            (directory / f"c{i:05d}" / "bundle.json").write_text("{}")
        sizes[("dir", n)] = len(_graph(["--input", str(directory), "--output", str(tmp_path / "out")]))
    assert abs(sizes[("jsonl", 10_000)] - sizes[("jsonl", 10)]) <= 256, (
        sizes
    )  # compressed pickles differ by a few bytes
    assert abs(sizes[("dir", 10_000)] - sizes[("dir", 10)]) <= 256, sizes  # compressed pickles differ by a few bytes
    assert sizes[("jsonl", 10_000)] < 200_000, sizes  # the 10,000 lines alone are ~4.5 MB
