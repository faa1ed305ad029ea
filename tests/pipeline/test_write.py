"""Write-then-read tests of pipeline/write.py: parts, shards (read back with webdataset), offsets, reproducibility."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from pipeline.windows import Sample
from pipeline.write import (
    OWNER,
    TAR_END_BYTES,
    PartInfo,
    finished_part,
    finished_shard,
    part_contents,
    plan_shards,
    temp_name,
    write_json,
    write_part,
    write_shard,
)
from schemas.shard import encode_array, encode_json, sample_key


def _sample(conv_key: str, window: int, fill: int) -> Sample:
    """A tiny sample with three members; `fill` makes the members' bytes differ between samples."""
    key = sample_key(conv_key, window)
    members = {
        "meta.json": encode_json({"key": key, "window": window}),
        "mask.npy": encode_array(np.full(3, fill, dtype=np.uint8)),
        "words.json": encode_json([{"text": f"w{fill}"}]),
    }
    return Sample(key=key, members=members, rows=({"key": key, "conversation_id": conv_key, "window": window},))


def _part(tmp_path: Path, conv_key: str, n: int, *, directory: str = "parts") -> tuple[PartInfo, list[Sample]]:
    samples = [_sample(conv_key, w, 10 * len(conv_key) + w) for w in range(n)]
    (tmp_path / directory).mkdir(exist_ok=True)
    part = write_part(
        iter(samples),
        path=str(tmp_path / directory / f"{conv_key}.tar"),
        conversation_id=conv_key,
        conversation_key=conv_key,
        summary={"conversation_key": conv_key, "duration_s": 1.5},
    )
    return part, samples


def _partials(root: Path) -> list[Path]:
    return sorted(root.rglob("*.partial"))


def test_write_part_then_finished_part_reads_it_back(tmp_path: Path) -> None:
    part, samples = _part(tmp_path, "conv", 2)
    path = Path(part.path)
    assert path.is_file() and Path(part.path + ".json").is_file()
    assert _partials(tmp_path) == []  # temporary names were renamed
    rows = [r for s in samples for r in s.rows]
    assert part_contents(part) == (rows, {"conversation_key": "conv", "duration_s": 1.5})
    assert part.samples == 2 and part.size_bytes % 512 == 0
    assert path.stat().st_size - TAR_END_BYTES <= part.size_bytes < path.stat().st_size  # members, no archive end
    assert finished_part(part.path) == part

    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"{s.key}.{ext}" for s in samples for ext in sorted(s.members)]
        for m in members:
            key, ext = m.name.split(".", 1)
            assert tar.extractfile(m).read() == next(s for s in samples if s.key == key).members[ext]
            assert (m.mtime, m.uname, m.gname, m.mode) == (0, OWNER, OWNER, 0o444)
            assert m.pax_headers == {}  # an int mtime: no extra PAX header (~1 KiB) before each member


def test_finished_part_needs_both_the_tar_and_its_sidecar(tmp_path: Path) -> None:
    part, _ = _part(tmp_path, "conv", 1)
    assert finished_part(str(tmp_path / "parts" / "other.tar")) is None
    Path(part.path + ".json").unlink()  # interrupted before the sidecar: not finished
    assert finished_part(part.path) is None


def test_write_shard_reads_back_with_webdataset_in_key_order_at_the_recorded_offsets(tmp_path: Path) -> None:
    part_b, samples_b = _part(tmp_path, "bbb", 2)
    part_a, samples_a = _part(tmp_path, "aa", 3)
    shard_path = tmp_path / "shard-00000.tar"
    info = write_shard([part_b, part_a], path=str(shard_path))  # given out of order: sorted by conversation key

    expected = samples_a + samples_b
    data = shard_path.read_bytes()
    assert info.name == "shard-00000.tar"
    assert (info.size_bytes, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert [r["key"] for r in info.rows] == [s.key for s in expected]
    assert all(r["shard"] == info.name for r in info.rows)
    assert [{k: v for k, v in r.items() if k not in ("shard", "offset")} for r in info.rows] == [
        r for s in expected for r in s.rows
    ]
    assert info.summaries == (part_contents(part_a)[1], part_contents(part_b)[1])
    assert info.size_bytes <= part_a.size_bytes + part_b.size_bytes + TAR_END_BYTES
    assert _partials(tmp_path) == []

    ds = wds.WebDataset([str(shard_path)], shardshuffle=False, handler=wds.reraise_exception, empty_check=False)
    read = list(ds)
    assert [r["__key__"] for r in read] == [s.key for s in expected]
    for raw, sample in zip(read, expected, strict=True):
        assert {k: v for k, v in raw.items() if not k.startswith("__")} == dict(sample.members)

    with tarfile.open(shard_path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"{s.key}.{ext}" for s in expected for ext in sorted(s.members)]
    assert {(m.mtime, m.uname, m.gname, m.mode) for m in members} == {(0, OWNER, OWNER, 0o444)}
    assert all(m.pax_headers == {} for m in members)
    first_header = {}
    for m in members:
        first_header.setdefault(m.name.split(".", 1)[0], m.offset)
    assert {r["key"]: r["offset"] for r in info.rows} == first_header
    for row, sample in zip(info.rows, expected, strict=True):  # a reader can seek straight to a sample
        with shard_path.open("rb") as f:
            f.seek(row["offset"])
            with tarfile.open(fileobj=f, mode="r|") as tar:
                first = tar.next()
                assert first is not None and first.name == f"{sample.key}.{sorted(sample.members)[0]}"
                assert tar.extractfile(first).read() == sample.members[sorted(sample.members)[0]]


def test_writing_the_same_parts_again_gives_identical_bytes(tmp_path: Path) -> None:
    part_a, _ = _part(tmp_path, "aa", 2)
    part_b, _ = _part(tmp_path, "bbb", 1)
    again_a, _ = _part(tmp_path, "aa", 2, directory="parts2")
    assert Path(again_a.path).read_bytes() == Path(part_a.path).read_bytes()

    first = write_shard([part_a, part_b], path=str(tmp_path / "one.tar"))
    second = write_shard([part_b, again_a], path=str(tmp_path / "two.tar"))
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    assert (first.sha256, first.size_bytes) == (second.sha256, second.size_bytes)
    assert [r["offset"] for r in first.rows] == [r["offset"] for r in second.rows]

    rewritten = write_shard([part_a, part_b], path=str(tmp_path / "one.tar"))  # over an existing shard
    assert rewritten.sha256 == first.sha256
    assert _partials(tmp_path) == []


def test_shard_sidecar_marks_the_shard_finished_when_its_files_exist(tmp_path: Path) -> None:
    part, _ = _part(tmp_path, "conv", 2)
    shard_path, sidecar = str(tmp_path / "shard-00000.tar"), str(tmp_path / "shard-00000.tar.json")
    info = write_shard([part], path=shard_path)
    assert finished_shard([shard_path], sidecar) is None  # no sidecar yet
    write_json(sidecar, {"name": info.name, "sha256": info.sha256})
    assert finished_shard([shard_path], sidecar) == {"name": info.name, "sha256": info.sha256}
    assert finished_shard([shard_path, str(tmp_path / "missing.parquet")], sidecar) is None
    Path(shard_path).unlink()
    assert finished_shard([shard_path], sidecar) is None


def test_a_part_without_samples_gives_an_empty_tar(tmp_path: Path) -> None:
    part, _ = _part(tmp_path, "empty", 0)
    assert part.samples == 0 and part.size_bytes == 0
    with tarfile.open(part.path) as tar:
        assert tar.getmembers() == []
    info = write_shard([part], path=str(tmp_path / "s.tar"))
    assert info.rows == () and info.summaries == (part_contents(part)[1],)


def _sized(key: str, size: int) -> PartInfo:
    return PartInfo(conversation_id=key, conversation_key=key, path=f"/nowhere/{key}.tar", size_bytes=size, samples=1)


def test_plan_shards_cuts_a_bucket_in_key_order_within_the_target() -> None:
    parts = [_sized(k, n) for k, n in [("d", 40_000), ("a", 30_000), ("c", 90_000), ("b", 20_000), ("e", 5_000)]]
    plan = plan_shards(parts, 70_000)
    assert [[p.conversation_key for p in shard] for shard in plan] == [["a", "b"], ["c"], ["d", "e"]]
    for shard in plan:  # within the target, unless one conversation is bigger
        assert sum(p.size_bytes for p in shard) + TAR_END_BYTES <= 70_000 or len(shard) == 1
    assert plan_shards(parts[::-1], 70_000) == plan  # arrival order does not matter
    assert [len(s) for s in plan_shards(parts, None)] == [5]
    assert plan_shards([], 70_000) == []


def test_a_shard_writer_failing_half_way_removes_its_file_and_a_retry_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part_a, _ = _part(tmp_path, "aa", 2)
    part_b, _ = _part(tmp_path, "bbb", 2)
    clean = write_shard([part_a, part_b], path=str(tmp_path / "clean.tar"))
    monkeypatch.setenv("MICROTURN_FAIL_ONCE", "shard")
    monkeypatch.setenv("MICROTURN_FAIL_ONCE_DIR", str(tmp_path))
    with pytest.raises(OSError, match="injected fault: shard"):
        write_shard([part_a, part_b], path=str(tmp_path / "out.tar"))
    assert not (tmp_path / "out.tar").exists() and _partials(tmp_path) == []
    retried = write_shard([part_a, part_b], path=str(tmp_path / "out.tar"))  # the retry: the fault fired once
    assert (tmp_path / "out.tar").read_bytes() == (tmp_path / "clean.tar").read_bytes()
    assert (retried.sha256, retried.size_bytes) == (clean.sha256, clean.size_bytes)
    assert [r["offset"] for r in retried.rows] == [r["offset"] for r in clean.rows]
    assert temp_name("/d/x.tar") != temp_name("/d/x.tar") and temp_name("/d/x.tar").startswith("/d/.x.tar.")
