"""Rejections by kind through the whole job: rejected.parquet, manifest["rejected_by"] and Beam counters agree."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.job import _counter, build
from pipeline.options import MicroturnOptions, job_config
from pipeline.read import list_inputs
from pipeline.rejects import KINDS, STAGES, Rejection
from pipeline.runner.runners import local_runner

from ..factories import make_bundle


def test_rejections_are_counted_by_stage_and_kind(tmp_path: Path) -> None:
    root = tmp_path / "in"
    make_bundle(root / "truncated", conv_id="truncated")
    (root / "truncated" / "A.wav").write_bytes((root / "truncated" / "A.wav").read_bytes()[:20_000])
    make_bundle(root / "badjson", conv_id="badjson")
    (root / "badjson" / "bundle.json").write_text('{"id": "badjson", "tracks": [')
    make_bundle(root / "zdup", conv_id="truncated")  # same id as truncated/, which sorts first and is kept
    options = PipelineOptions(["--input", str(root), "--output", str(tmp_path / "out")])
    opts = options.view_as(MicroturnOptions)
    (tmp_path / "out").mkdir()
    p = beam.Pipeline(runner=local_runner(options), options=options)
    build(p, opts, list_inputs(opts.input), job_config(opts))
    result = p.run()
    result.wait_until_finish()

    rows = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    got = {Path(r["input"]).parent.name: (r["stage"], r["kind"]) for r in rows}
    assert got == {
        "truncated": ("decode", "truncated_wav"),
        "badjson": ("read", "malformed_json"),
        "zdup": ("read", "duplicate_id"),
    }
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rejected_by"] == {"decode": {"truncated_wav": 1}, "read": {"duplicate_id": 1, "malformed_json": 1}}
    assert manifest["rejected_by_stage"] == {"decode": 1, "read": 2}
    counters = {
        name: _counter(result, name)
        for name in (
            "rejected_decode_truncated_wav",
            "rejected_read_malformed_json",
            "rejected_read_duplicate_id",
            "rejected_read",
            "rejected_decode",
            "rejected_align_words_past_end",
        )
    }
    assert counters == {
        "rejected_decode_truncated_wav": 1,
        "rejected_read_malformed_json": 1,
        "rejected_read_duplicate_id": 1,
        "rejected_read": 2,
        "rejected_decode": 1,
        "rejected_align_words_past_end": 0,
    }


def test_kinds_are_unique_snake_case_and_checked() -> None:
    assert len(set(KINDS)) == len(KINDS)
    assert all(k.replace("_", "").isalpha() and k == k.lower() for k in KINDS)
    with pytest.raises(ValueError, match="unknown rejection kind"):
        Rejection(input="x", stage="read", kind="Malformed JSON", reason="x")
    assert Rejection(input="x", stage=STAGES[0], kind="unexpected_error", reason="boom").to_row()["kind"] == (
        "unexpected_error"
    )


def test_every_raise_site_names_a_known_kind() -> None:
    """Each BundleError / DecodeError / AlignError call in pipeline/ and schemas/bundle.py passes a literal kind of its
    class, even on paths no other test reaches; and every kind is used somewhere."""
    import ast

    from pipeline.rejects import ALIGN_KINDS, DECODE_KINDS, JOB_KINDS
    from schemas.bundle import BUNDLE_KINDS

    allowed = {"BundleError": BUNDLE_KINDS, "DecodeError": DECODE_KINDS, "AlignError": ALIGN_KINDS}
    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "pipeline").rglob("*.py")) + [root / "schemas" / "bundle.py"]
    bad, used, calls = [], set(), 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in allowed:
                calls += 1
                kind = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                if len(node.args) != 2 or kind not in allowed[node.func.id]:
                    bad.append(f"{path.relative_to(root)}:{node.lineno}")
                used.add(kind)
    assert calls > 40 and bad == []
    assert set(KINDS) - set(JOB_KINDS) - used == set()
