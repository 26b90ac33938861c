#!/usr/bin/env bash
# The GPU check: CUDA tests, the speed benchmark on the GPU, and a 3-minute Copy run on the GPU
# tested at 11/22/44/88, with benchmarks/id_sort_gpu.sh (3 minutes) running beside the Copy run.
# Run from the repository root on a machine with a CUDA device:
#   OUT=gpu_out bash benchmarks/gpu_check.sh
# It needs torch with CUDA, pytest and tqdm; the package is used from src/ (no install).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_speed.py 2>&1 | tee "$OUT/pytest_cuda.log" | tail -5
# The authors' code side by side, where the reference folder is beside (or inside) the clone.
AUTHORS=${AUTHORS:-}
for dir in ../shared/reference/authors-panm shared/reference/authors-panm; do
  [ -z "$AUTHORS" ] && [ -f "$dir/baselines/panm.py" ] && AUTHORS=$dir
done
python3 -m panm bench-speed --device cuda ${AUTHORS:+--authors-code "$AUTHORS"} \
  --out "$OUT/speed_gpu.json" 2>&1 | tee "$OUT/speed_gpu.log"
MINUTES=3 bash benchmarks/id_sort_gpu.sh > /dev/null &
python3 -m panm train --task copy --device cuda --minutes 3 --no-progress --out "$OUT/copy-gpu" > "$OUT/train_gpu.log" 2>&1
tail -3 "$OUT/train_gpu.log"
python3 -m panm eval --checkpoint "$OUT/copy-gpu" --lengths 11,22,44,88 --device cuda --out "$OUT/eval_gpu.json" 2>&1 | tail -8
rm -rf "$OUT/copy-gpu"
wait
tail -n 7 "$OUT"/id_sort-close*.log
