#!/usr/bin/env bash
# SCAN on one GPU: a bench config's runs as concurrent processes on the one device, then the
# runs' raw results (every file but the checkpoints) packed into $OUT/scan_runs.tgz. The bench
# resumes: run the script again with the same WORK folder to finish what a time limit cut short.
#   OUT=gpu_out CONFIG=configs/scan/gpu_row.json JOBS=22 LIMIT_S=330 bash benchmarks/scan_gpu.sh
# The runs record test set final unless TEST_SET=dev (SCAN's test part is the same under both
# names; the name says whether the runs are development runs).
set -uo pipefail
OUT=${OUT:-gpu_out}
CONFIG=${CONFIG:-configs/scan/gpu_row.json}
WORK=${WORK:-bench_out/$(basename "$CONFIG" .json)}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
timeout "${LIMIT_S:-330}" python3 -m panm bench "$CONFIG" --out "$WORK" --device "${DEVICE:-cuda}" \
  --jobs "${JOBS:-22}" --test-set "${TEST_SET:-final}" --no-progress > "$OUT/scan_bench.log" 2>&1
echo "panm bench exit status $?" >> "$OUT/scan_bench.log"
tar czf "$OUT/scan_runs.tgz" --exclude=checkpoints --exclude=.lock -C "$(dirname "$WORK")" \
  "$(basename "$WORK")"
tail -30 "$OUT/scan_bench.log"
