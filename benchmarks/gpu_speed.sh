#!/usr/bin/env bash
# The GPU speed check, side by side with the authors' code: `panm bench-speed` eager, then with
# CUDA graphs (`--compile reduce-overhead`), then training and evaluation throughput at batch
# 128 and 8,192 (benchmarks/batch_scaling.py). Run from the repository root on a CUDA machine:
#   OUT=gpu_out AUTHORS=DIR bash benchmarks/gpu_speed.sh
# AUTHORS: the authors' code (a checkout of thaihungle/PANM, or ../shared/reference/authors-panm).
# Each step has a time limit (EAGER_S, GRAPHS_S, SCALING_S seconds), so the script fits a
# time-limited GPU lease; a step cut short leaves its log. The package is used from src/.
set -uo pipefail
OUT=${OUT:-gpu_out}
AUTHORS=${AUTHORS:?give AUTHORS=DIR, the authors\' code}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout "${EAGER_S:-90}" python3 -m panm bench-speed --device cuda --authors-code "$AUTHORS" \
  --out "$OUT/speed_gpu.json" > "$OUT/speed_gpu.log" 2>&1
timeout "${GRAPHS_S:-200}" python3 -m panm bench-speed --device cuda --authors-code "$AUTHORS" \
  --compile reduce-overhead --out "$OUT/speed_gpu_graphs.json" > "$OUT/speed_gpu_graphs.log" 2>&1
timeout "${SCALING_S:-60}" python3 benchmarks/batch_scaling.py --device cuda --batches 128,8192 \
  > "$OUT/batch_scaling.txt" 2>&1
grep -A8 "^model" "$OUT/speed_gpu.log" "$OUT/speed_gpu_graphs.log"; cat "$OUT/batch_scaling.txt"
