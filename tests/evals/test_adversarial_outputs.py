"""Issue 23.11, writes outside the output: a dataset is input too. A `meta.json` whose ``conversation_key`` is
``../../../`` or an absolute path must not make `respond`, `export gander` or `export fdbench` write anything
outside --out; every name taken from data goes through schemas.paths (safe_name, confined_join).

    PYTHONPATH=. python -m pytest -q tests/evals/test_adversarial_outputs.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from microturn_cli import main
from schemas.paths import confined_join, safe_name
from tests.crafted import keep_audio_dataset, tiny_checkpoint, with_meta


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keep_audio_dataset(tmp_path_factory.mktemp("adv-out"))


def files_under(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


@pytest.mark.parametrize("key", ["../../../", "ABSOLUTE", "..", "a/../../b", ""])
def test_names_from_data_stay_inside(key: str, tmp_path: Path) -> None:
    key = str(tmp_path / "abs") if key == "ABSOLUTE" else key
    name = safe_name(key)
    assert os.sep not in name and name not in ("", ".", "..")
    assert Path(confined_join(str(tmp_path / "out"), name)).parent == tmp_path / "out"
    assert safe_name("demo-0001_A") == "demo-0001_A"  # the pipeline's own names are kept
    assert safe_name("../a") != safe_name("/a")  # two unsafe names stay apart
    with pytest.raises(ValueError, match="outside the output"):
        confined_join(str(tmp_path / "out"), "../x")
    with pytest.raises(ValueError, match="expected a name"):
        safe_name(["a"])


@pytest.mark.parametrize("key", ["../../../", "ABSOLUTE"])
@pytest.mark.parametrize("command", ["respond", "export gander", "export fdbench"])
def test_crafted_key_writes_only_under_out(
    command: str, key: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "a" / "b" / "c"  # three levels of directories above --out to catch "../../../"
    work.mkdir(parents=True)
    absolute = Path(f"/tmp/mt-adv-{os.getpid()}")  # short: the crafted meta.json keeps its tar blocks
    crafted = with_meta(
        dataset, work / "crafted", lambda m: m.update(conversation_key=str(absolute) if key == "ABSOLUTE" else key)
    )
    ckpt = tiny_checkpoint(work / "checkpoint.pt")
    out = work / "out"
    before = files_under(tmp_path)
    argv = {
        "respond": [
            "respond",
            "--checkpoint",
            str(ckpt),
            "--input",
            str(crafted),
            "--out",
            str(out),
            "--max_conversations",
            "1",
        ],
        "export gander": ["export", "gander", str(crafted), "--out", str(out / "conversations.jsonl")],
        "export fdbench": ["export", "fdbench", str(crafted), "--out", str(out), "--all"],
    }[command]
    if command == "export gander":
        out.mkdir()
    assert main(argv) == 0, capsys.readouterr()
    new = files_under(tmp_path) - before
    assert new, "the command wrote nothing"
    outside = sorted(p for p in new if not p.startswith(str(out) + os.sep))
    assert not outside, outside
    assert not absolute.exists()
    assert "Traceback" not in capsys.readouterr().err
