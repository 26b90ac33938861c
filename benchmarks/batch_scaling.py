"""Training and evaluation throughput against batch size (Copy, length 10, width 128).

    python benchmarks/batch_scaling.py --device cuda [--batches 128,512,2048,8192]

Prints sequences per second of each `panm bench-speed` row at each batch size (medians of
interleaved rounds, as `panm.speed.measure_throughput` times them) and PANM's ratio to the
attention baseline. benchmarks/README.md quotes its GPU run.
"""

import argparse

import torch

from panm.speed import SpeedConfig, measure_throughput
from panm.tasks import get_task

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cpu")
parser.add_argument("--batches", default="128,512,2048,8192")
args = parser.parse_args()
task = get_task("copy")
name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
print(f"device {args.device} ({name}), torch {torch.__version__}")
print(f"{'batch':>6} {'row':<11} {'train seq/s':>12} {'eval seq/s':>12}")
for batch_size in [int(b) for b in args.batches.split(",")]:
    config = SpeedConfig.quick(batch_size=batch_size, device=args.device)
    rows = measure_throughput(config, task)["models"]
    for row, result in rows.items():
        train, evaluate = (result[k]["sequences_per_second"] for k in ("train", "eval"))
        print(f"{batch_size:>6} {row:<11} {train:>12.0f} {evaluate:>12.0f}")
    ratio = rows["attention"]["train"]["median_seconds"] / rows["panm"]["train"]["median_seconds"]
    print(f"{batch_size:>6} panm train speed / attention's: {ratio:.2f}")
