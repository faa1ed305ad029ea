#!/usr/bin/env bash
# Set up microturn on a fresh Debian/Ubuntu machine: system tools, a virtualenv in .venv, the package.
#   bash scripts/setup.sh          # runtime only
#   bash scripts/setup.sh --dev    # plus test tools (pytest, ruff, mypy, the dMel reference used as a test oracle)
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev]"

missing=()
for tool in ffmpeg ffprobe espeak-ng sox flite festival; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# synth dialogues loads libespeak-ng and libflite (+ its voices) through ctypes, and festival's kal and ked voices
for lib in libespeak-ng.so.1 libflite_cmu_us_slt.so.1; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("$lib")
done
for voice in kal_diphone ked_diphone; do
  [[ -d /usr/share/festival/voices/english/$voice ]] || missing+=("festival voice $voice")
done
if ((${#missing[@]})); then
  echo "== installing Debian packages (missing: ${missing[*]})"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng libespeak-ng1 sox flite libflite1 \
    festival festvox-kallpc16k festvox-kdlpc16k >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "== installing microturn$extra into .venv (first time: ~8 GB, a few minutes; torch is whisperx's pin)"
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e ".$extra"
.venv/bin/python -m pip check
# pip does not byte-compile an editable install: compile it once, so that every command starts without compiling
# the package again (where PYTHONDONTWRITEBYTECODE is set, Python would otherwise do it on every start).
.venv/bin/python -m compileall -q -j 0 microturn_cli.py cli pipeline schemas synth trainer kernels evals >/dev/null
echo "== ready: .venv/bin/microturn --help"
