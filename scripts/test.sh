#!/usr/bin/env bash
# Set everything up and run the test suite (what CI runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # tests/conftest.py sets TRITON_INTERPRET=1 when there is no GPU
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
