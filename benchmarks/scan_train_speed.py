"""SCAN training steps per second, eager against compiled, with `panm train` itself.

    python benchmarks/scan_train_speed.py --device cuda --seconds 140 --out DIR

Starts four `panm train` runs at once on the SCAN cut-off-26 split (batch 256, relative
positions): `transformer+panm` and `transformer`, each eager and with `--compile
reduce-overhead --pad-multiple 16` (CUDA graphs on a GPU over batches padded to a few shapes; on
the CPU the mode compiles without graphs). Every run trains for `--seconds` (compiling
included) and logs every 25 steps; the rate is counted from the first logged step at or after
`--skip` to the last, so compiling and warm-up are left out and reported apart as the seconds to
that first step. The four share the machine (a run per core; on a GPU, one device), so the
ratios compiled / eager of the same run are what this measures, not a model's speed alone.
Writes DIR/scan_train_speed.json (commit, machine, one record per run) and prints a table;
the runs' folders stay in DIR/runs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from panm.speed import _cpu_name

RUNS = {
    "transformer+panm eager": ("transformer+panm", "transformer_position", []),
    "transformer+panm graphs": (
        "transformer+panm",
        "transformer_position",
        ["--compile", "reduce-overhead", "--pad-multiple", "16"],
    ),
    "transformer eager": ("transformer", "position", []),
    "transformer graphs": (
        "transformer",
        "position",
        ["--compile", "reduce-overhead", "--pad-multiple", "16"],
    ),
}

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cpu")
parser.add_argument("--seconds", type=float, default=140.0)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--skip", type=int, default=100, help="steps left out of the rate")
parser.add_argument("--out", required=True)
args = parser.parse_args()
out = Path(args.out)
if (out / "runs").exists() and any((out / "runs").iterdir()):
    sys.exit(f"{out / 'runs'} is not empty: give a new --out (old runs would be read as new)")
(out / "runs").mkdir(parents=True, exist_ok=True)

processes = {}
for name, (model, position_key, flags) in RUNS.items():
    run_dir = out / "runs" / name.replace(" ", "-")
    command = [
        sys.executable, "-m", "panm", "train", "--task", "scan", "--split", "cutoff-26",
        "--model", model, "--set", f"{position_key}=relative", "--batch-size", str(args.batch),
        "--steps", "1000000", "--minutes", str(args.seconds / 60), "--eval-every", "1000000",
        "--valid-count", "64", "--device", args.device, "--no-progress", "--out", str(run_dir),
        *flags,
    ]  # fmt: skip
    with (out / f"{run_dir.name}.log").open("w") as log:  # the child keeps its own handle
        processes[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), run_dir)

records = []
for name, (process, run_dir) in processes.items():
    status = process.wait()
    lines = []
    if (run_dir / "metrics.jsonl").exists():
        lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [x for x in lines if "loss" in x]
    counted = [x for x in trained if x["step"] >= args.skip]
    record = {"run": name, "exit_status": status, "steps": trained[-1]["step"] if trained else 0}
    if status == 0 and len(counted) >= 2:
        first, last = counted[0], counted[-1]
        seconds = last["elapsed_seconds"] - first["elapsed_seconds"]
        record.update(
            steps_per_second=round((last["step"] - first["step"]) / seconds, 2),
            counted_steps=[first["step"], last["step"]],
            seconds_to_first_counted_step=first["elapsed_seconds"],
        )
    records.append(record)

commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
).stdout.strip()
device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else _cpu_name()
result = {
    "command": "python benchmarks/scan_train_speed.py " + " ".join(sys.argv[1:]),
    "commit": commit,
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "device": args.device,
    "device_name": device_name,
    "cpu_count": os.cpu_count(),
    "torch": torch.__version__,
    "batch": args.batch,
    "seconds_per_run": args.seconds,
    "runs": records,
}
(out / "scan_train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"{'run':26} {'steps':>6} {'steps/s':>8} {'s to step ' + str(args.skip):>12}")
for r in records:
    rate = r.get("steps_per_second", float("nan"))
    warm_up = r.get("seconds_to_first_counted_step", float("nan"))
    print(f"{r['run']:26} {r['steps']:6d} {rate:8.2f} {warm_up:12.1f}")
rates = {r["run"]: r.get("steps_per_second") for r in records}
for model in ("transformer+panm", "transformer"):
    eager, graphs = rates[f"{model} eager"], rates[f"{model} graphs"]
    if eager and graphs:
        print(f"{model}: graphs / eager = {graphs / eager:.2f}x")
