#!/usr/bin/env bash
# ID Sort on a GPU: PANM's default recipe trained with uniform ids (close_ids=0) and with half its
# training examples drawn from a window of close ids (close_ids=0.5), side by side for MINUTES
# each, then tested at 11/22/44/88 (500 examples). Run from the repository root on a CUDA machine:
#   OUT=gpu_out MINUTES=4 bash benchmarks/id_sort_gpu.sh
# The logs (training summary and test table) land in $OUT; the runs in $RUNS.
set -uo pipefail
OUT=${OUT:-gpu_out} MINUTES=${MINUTES:-4} RUNS=${RUNS:-/tmp/panm_id_sort_gpu}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
for close in 0 0.5; do
  (
    python3 -m panm train --task id_sort --task-option close_ids=$close --device cuda \
      --minutes "$MINUTES" --no-progress --out "$RUNS/close$close"
    python3 -m panm eval --checkpoint "$RUNS/close$close" --lengths 11,22,44,88 --device cuda
  ) > "$OUT/id_sort-close$close.log" 2>&1 &
done
wait
tail -n 8 "$OUT"/id_sort-close*.log
