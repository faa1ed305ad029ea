"""Issue 13.8: a nonexistent path is one error line and exit 2 in every command, never a traceback; a command group
alone (`microturn export`, `microturn synth`) lists its subcommands, and --help works on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from microturn_cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "{missing}", "--out", "{tmp}/run", "--config", "tiny"],
        ["eval", "--checkpoint", "{missing}/c.pt", "--data", "{missing}"],
        ["inspect", "{missing}", "k_A_00000", "--out", "{tmp}/x.png"],
        ["report", "{missing}", "--out", "{tmp}/r.html"],
        ["split", "{missing}", "--out", "{tmp}/split"],
        ["export", "fdbench", "{missing}", "--out", "{tmp}/fd"],
        ["eval-align", "--input", "{missing}", "--aligner", "pocketsphinx"],
        ["demo", "--out", "{file}/under-a-file", "--count", "1"],
        ["run", "--input", "{missing}", "--output", "{tmp}/out"],
        ["run", "--input", "{tmp}", "--output", "{file}"],
    ],
)
def test_missing_path_is_one_error_line(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "in").mkdir()
    values = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path / "in"), "file": str(tmp_path / "a-file")}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"microturn {argv[0]}" in err and "error:" in err, err


@pytest.mark.parametrize("group", ["export", "synth"])
def test_command_group_alone_and_help(group: str, capsys: pytest.CaptureFixture) -> None:
    assert main([group]) == 2
    assert f"{group} " in capsys.readouterr().err
    assert main([group, "--help"]) == 0
    assert "subcommands" in capsys.readouterr().out


def test_run_with_bad_arguments_is_argparse_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--num_shards", "x", "--input", "a", "--output", "b"])
    assert e.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["run", "--help"]) == 0
