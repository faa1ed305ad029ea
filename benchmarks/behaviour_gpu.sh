#!/usr/bin/env bash
# The behaviour benchmark's recipe at the `small` preset on one GPU (an H100), in at most 10 minutes of GPU time.
#
#   benchmarks/behaviour_gpu.sh OUT            # step 1 on the CPU machine, step 2 on the GPU machine (same OUT)
#   STEP=data benchmarks/behaviour_gpu.sh OUT  # only step 1: dialogues + pipeline, cached under OUT/data
#   STEP=gpu  benchmarks/behaviour_gpu.sh OUT  # only step 2: needs OUT/data from step 1
#   DRY_RUN=1 benchmarks/behaviour_gpu.sh OUT  # print the commands
#
# Step 1 (CPU, cached: skipped when OUT/data already holds it, e.g. from a CPU run of behaviour_demo.py with the
# same --out): the same 300 training and 40 held-out dialogues as the CPU benchmark, with cues and the control.
# Step 2 (GPU): the main run (cues, user text none) and the control (--cues none), each GPU_MINUTES minutes of
# training (default 3) of the small preset with 32 micro-turns of context, then the learning curve and the same
# tables as the CPU benchmark (evaluation runs on the GPU too); HEARD=1 adds the `heard` ablation (3 more minutes
# plus its evaluation: over the 10-minute budget unless GPU_MINUTES is lowered to 2). The speak threshold is the
# fixed --speak_threshold 0.5 unless THRESHOLDS (e.g. 0.15,0.3,0.5) names some to choose from on the 20 dev
# conversations as the CPU benchmark does (each costs one more pass over 40 dev perspectives per run). DATA_ARGS
# passes data options to every step, e.g. DATA_ARGS="--train_speed_perturb 0.85,1.15" (speed-perturbed training
# voices; a new OUT, since the data differs).
set -euo pipefail
OUT=${1:-behaviour-gpu-out}
STEP=${STEP:-all}
PY=${PYTHON:-python}
GPU_MINUTES=${GPU_MINUTES:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
read -r -a DATA <<< "${DATA_ARGS:-}"
BENCH=("$PY" "$ROOT/benchmarks/behaviour_demo.py" --out "$OUT" "${DATA[@]}")
GPU=(--preset small --device cuda --context 32 --batch_size 16 --lr 1e-3 --steps 3000 --threads 4
     --train_minutes "$GPU_MINUTES" --curve_conversations 8 --num_workers 4 --thresholds "${THRESHOLDS:-}")
run() {
  if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}
if [[ "$STEP" == all || "$STEP" == data ]]; then
  run "${BENCH[@]}" --stage data --cues natural
  run "${BENCH[@]}" --stage data --cues none
fi
if [[ "$STEP" == all || "$STEP" == gpu ]]; then
  run "${BENCH[@]}" --stage train "${GPU[@]}" --cues natural --user_text none
  run "${BENCH[@]}" --stage train "${GPU[@]}" --cues none --user_text none
  if [[ -n "${HEARD:-}" ]]; then
    run "${BENCH[@]}" --stage train "${GPU[@]}" --cues natural --user_text heard
  fi
  run "${BENCH[@]}" --stage report
fi
