"""Issue 13.8: two ids never share a sample key silently; long ids keep a short key and their full id in meta."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.job import run
from schemas.bundle import MAX_KEY_CHARS, sanitise_id
from schemas.reader import iter_samples

from ..factories import make_bundle


def _colliding_ids() -> tuple[str, str]:
    """Two ids of the form k<unsafe characters>1: both sanitise to k-1 plus the same 8-hex hash (a birthday search)."""
    seen: dict[str, str] = {}
    for n in range(1, 9):
        for chars in itertools.product("._/ :;,!", repeat=n):
            text = "k" + "".join(chars) + "1"
            digest = hashlib.sha1(text.encode()).hexdigest()[:8]
            if digest in seen:
                return seen[digest], text
            seen[digest] = text
    raise AssertionError("no collision found")


def test_a_safe_id_that_looks_hashed_keeps_apart() -> None:
    assert sanitise_id("a/b") == "a-b-3ec69c85"
    assert sanitise_id("a-b-3ec69c85") != sanitise_id("a/b")
    assert sanitise_id("plain-id-01") == "plain-id-01"


def test_colliding_ids_and_long_ids_through_the_job(tmp_path: Path) -> None:
    first, second = _colliding_ids()
    assert sanitise_id(first) == sanitise_id(second)
    long_id = "L" * 300
    ids = {"slash": "a/b", "lookalike": "a-b-3ec69c85", "c1": first, "c2": second, "long": long_id}
    for name, conv_id in ids.items():
        make_bundle(tmp_path / "in" / name, conv_id=conv_id)
    out = tmp_path / "out"
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(out)])

    index = pq.read_table(out / "index").to_pylist()
    # no duplicate keys: one row per (window key, perspective), every window key seen from both speakers
    assert len({(r["key"], r["perspective"]) for r in index}) == len(index) == 2 * len({r["key"] for r in index})
    assert {r["conversation_id"] for r in index} == {"a/b", "a-b-3ec69c85", first, long_id}
    assert all(len(r["key"]) < MAX_KEY_CHARS + 40 for r in index)
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    assert [(r["conversation_id"], r["kind"]) for r in rejected] == [(second, "id_collision")]
    assert "same sample key" in rejected[0]["reason"]
    assert manifest["counts"]["conversations_written"] == 4
    metas = [s["meta.json"] for s in iter_samples(str(out))]
    assert any(m["conversation_id"] == long_id for m in metas)
