#!/usr/bin/env bash
# Set everything up and run the test suite (what CI runs). Extra arguments go to pytest (after ours, so they win:
# `bash scripts/test.sh -n 0` runs in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # tests/conftest.py sets TRITON_INTERPRET=1 when there is no GPU
# one pytest worker per core (pytest-xdist), whole files per worker: a module's fixtures are built once
.venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile "$@"
