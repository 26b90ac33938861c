#!/usr/bin/env bash
# One 10-minute GPU call for SCAN work, in three timed parts, from the repository root:
#   OUT=gpu_out AUTHORS=DIR CONFIG=configs/scan/stop_positions.json bash benchmarks/scan_gpu_call.sh
# 1. `panm bench-speed --device cuda --authors-code $AUTHORS` (eager; skipped without AUTHORS),
#    at most SPEED_S seconds.
# 2. benchmarks/scan_train_speed.py: SCAN training steps per second, eager against CUDA graphs,
#    PROBE_S seconds a run, in bench_out/scan_speed (emptied first); that folder, checkpoints
#    left out, packed into $OUT/scan_speed.tgz, its printout in $OUT/scan_speed.log.
# 3. benchmarks/scan_gpu.sh with CONFIG (JOBS runs at once, at most LIMIT_S seconds;
#    TEST_SET=dev by default here: these calls explore).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" >> "$OUT/gpu.txt"
if [ -n "${AUTHORS:-}" ]; then
  timeout "${SPEED_S:-85}" python3 -m panm bench-speed --device cuda --authors-code "$AUTHORS" \
    --out "$OUT/speed_gpu.json" > "$OUT/speed_gpu.log" 2>&1
fi
PROBE_S=${PROBE_S:-110}
rm -rf bench_out/scan_speed
timeout $((PROBE_S + 40)) python3 benchmarks/scan_train_speed.py --device cuda \
  --seconds "$PROBE_S" --out bench_out/scan_speed > "$OUT/scan_speed.log" 2>&1
tar czf "$OUT/scan_speed.tgz" --exclude=checkpoints --exclude=.lock -C bench_out scan_speed
OUT=$OUT TEST_SET=${TEST_SET:-dev} LIMIT_S=${LIMIT_S:-330} JOBS=${JOBS:-12} \
  bash benchmarks/scan_gpu.sh
tail -12 "$OUT/scan_speed.log"
