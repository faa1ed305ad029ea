"""The command line, apart from the library (as Lhotse keeps ``lhotse/bin/modes/``): one module per command group,
each command a thin function ``cmd_<name>(argv) -> exit status`` over the packages; `microturn_cli` dispatches.

    microturn --help

Nothing in ``pipeline``, ``schemas``, ``synth``, ``trainer``, ``kernels`` or ``evals`` imports this package
(pyproject.toml's import-linter contracts); the flags of config dataclasses are derived from them (`cli.flags`).
"""
