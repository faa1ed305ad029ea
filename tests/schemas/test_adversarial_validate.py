"""Issue 13.8: `validate` reports malformed shards as violations instead of a traceback; `microturn train` at a
corrupt shard stops naming it, or skips and counts it (--bad_shards skip)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.job import run
from schemas.shard import compress, decode_array, decompress, encode_array
from schemas.validate import validate
from tests.factories import make_bundle


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adv")
    for i in (0, 3):  # c0 and c3 land in different shards of 2
        make_bundle(root / "in" / f"c{i}", conv_id=f"c{i}")
    run(["--input", str(root / "in"), "--output", str(root / "ds"), "--num_shards", "2"])
    return root / "ds"


def _copy_with(dataset: Path, tmp_path: Path, change: Callable[[tarfile.TarFile, list], None]) -> Path:
    """A copy of the dataset whose first shard is rewritten: `change(tar, members)` writes the members."""
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    name = json.loads((dataset / "manifest.json").read_text())["shards"][0]["name"]
    with tarfile.open(dataset / name) as src:
        members = [(m, src.extractfile(m).read()) for m in src]
    with tarfile.open(out / name, "w", format=tarfile.GNU_FORMAT) as tar:
        change(tar, members)
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _replace(suffix: str, payload: Callable[[bytes], bytes]) -> Callable[[tarfile.TarFile, list], None]:
    def change(tar: tarfile.TarFile, members: list) -> None:
        done = False
        for m, data in members:
            if not done and m.name.endswith(suffix):
                data, done = payload(data), True
            _add(tar, m.name, data)

    return change


def _huge_member(tar: tarfile.TarFile, members: list) -> None:
    for m, data in members:
        _add(tar, m.name, data)
    info = tarfile.TarInfo("x_A_00000.extra.bin")
    info.size = 2**60
    tar.fileobj.write(info.tobuf(format=tarfile.GNU_FORMAT))  # the header alone: 2^60 bytes claimed
    tar.fileobj.write(b"\0" * 1024)


def _symlink_member(tar: tarfile.TarFile, members: list) -> None:
    for m, data in members:
        _add(tar, m.name, data)
    info = tarfile.TarInfo("x_A_00000.link.json")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tar.addfile(info)


def _huge_shape(data: bytes) -> bytes:
    array = decode_array(data)
    header = f"(1099511627776, {array.shape[1]})" if array.ndim == 2 else "(1099511627776,)"
    text = data.decode("latin-1")
    start = text.index("'shape': ") + len("'shape': ")
    end = text.index(")", start) + 1
    new = text[:start] + header + text[end:]
    pad = len(text[: text.index("\n") + 1]) - len(new[: new.index("\n") + 1])  # keep the header length
    new = new.replace(header + ", }", header + ", }" + " " * max(pad, 0), 1) if pad > 0 else new
    return new.encode("latin-1")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_huge_member, "past the end of the file"),
        (_symlink_member, "not a regular file"),
        (_replace(".meta.json.zst", lambda d: compress(b"[1, 2, 3]")), "list"),
        (_replace("dmel.npy.zst", lambda d: compress(_huge_shape(decompress(d)))), "claims shape"),
    ],
)
def test_validate_reports_instead_of_crashing(dataset: Path, tmp_path: Path, change: Callable, expected: str) -> None:
    report = validate(str(_copy_with(dataset, tmp_path, change)))
    assert not report.ok
    assert any(expected in v for v in report.violations), report.render()


def test_validate_manifest_that_is_a_list(dataset: Path, tmp_path: Path) -> None:
    shutil.copytree(dataset, tmp_path / "ds")
    (tmp_path / "ds" / "manifest.json").write_text("[]")
    report = validate(str(tmp_path / "ds"))
    assert not report.ok and "not a JSON object" in report.render()


def test_decode_array_refuses_a_shape_larger_than_its_bytes() -> None:
    data = encode_array(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="claims shape"):
        decode_array(data.replace(b"(2, 3)", b"(9, 3)"))


def _corrupt_shard(dataset: Path, tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    name = json.loads((dataset / "manifest.json").read_text())["shards"][0]["name"]
    with tarfile.open(out / name) as tar:
        second = tar.getmembers()[1].offset  # the second member's header
    data = (out / name).read_bytes()
    (out / name).write_bytes(data[:second] + b"\x07" * 512 + data[second + 512 :])  # a damaged tar header
    return out, name


def test_train_stops_naming_the_corrupt_shard(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from microturn_cli import main

    ds, name = _corrupt_shard(dataset, tmp_path)
    argv = ["train", "--data", str(ds), "--out", str(tmp_path / "run"), "--config", "tiny", "--steps", "2"]
    assert main([*argv, "--num_workers", "0", "--device", "cpu", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert name in err and "--bad_shards skip" in err and "Traceback" not in err


def test_train_skips_and_counts_corrupt_shards(dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cli.train import cmd_train as train_main

    ds, name = _corrupt_shard(dataset, tmp_path)
    argv = ["--data", str(ds), "--out", str(tmp_path / "run"), "--config", "tiny", "--steps", "2", "--num_workers"]
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        assert train_main([*argv, "0", "--device", "cpu", "--no_progress", "--bad_shards", "skip"]) == 0
    assert any(name in r.getMessage() and "skipped corrupt shard" in r.getMessage() for r in caplog.records)
