"""Issue 23.11, Lhotse manifests: a manifest that is /dev/zero, a FIFO or a gzip bomb is one rejection
(lhotse_unreadable, naming why): read only as a regular file of bounded size, decompressed with a cap; never a
MemoryError or a hang.

    PYTHONPATH=. python -m pytest -q tests/pipeline/inputs/test_adversarial_lhotse.py
"""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import pytest

from microturn_cli import main
from pipeline.inputs.lhotse import list_lhotse, read_manifest_bytes
from pipeline.read import list_inputs
from schemas.tables import read_rejected


def gzip_bomb(path: Path, mib: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as f:
        zeros = bytes(1 << 20)
        for _ in range(mib):
            f.write(zeros)
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["dev_zero", "fifo", "gzip_bomb", "too_large"])
def test_bad_manifest_is_one_rejection(case: str, tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    name = root / ("c_cuts.jsonl.gz" if case == "gzip_bomb" else "c_cuts.jsonl")
    if case == "dev_zero":
        name.symlink_to("/dev/zero")
    elif case == "fifo":
        os.mkfifo(name)
    elif case == "gzip_bomb":
        gzip_bomb(name, 300)  # 300 MiB of zeros in about 300 kB: past the 256 MiB cap
    tracemalloc.start()
    try:
        if case == "too_large":
            name.write_text('{"id": "x"}\n' * 100)
            items = list_lhotse([str(name)], lambda p: read_manifest_bytes(p, max_bytes=500))
        else:
            items = list_inputs(str(root))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [i.kind for i in items] == ["lhotse_unreadable"], items
    reason = {
        "dev_zero": "not a regular file",
        "fifo": "not a regular file",
        "gzip_bomb": "decompresses to more than",
        "too_large": "larger than",
    }[case]
    assert reason in items[0].text, items[0].text
    assert peak < 300 << 20, peak


@pytest.mark.timeout(120)
def test_job_rejects_them_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "a_cuts.jsonl").symlink_to("/dev/zero")
    os.mkfifo(root / "b_cuts.jsonl")
    gzip_bomb(root / "c_cuts.jsonl.gz", 300)
    out = tmp_path / "out"
    assert main(["run", "--input", str(root), "--output", str(out)]) == 1  # nothing written: every input rejected
    rejected = read_rejected(str(out)).to_pylist()
    assert len(rejected) == 3 and {r["kind"] for r in rejected} == {"unreadable_file"}, rejected
    assert "Traceback" not in capsys.readouterr().err
