"""Greedy decoding time with and without the key/value cache (SCAN length split, test part).

    python benchmarks/decode_cache.py --out benchmarks/decode_cache_cpu.json [--device cuda]

Times `model.generate` of `transformer` and `transformer+panm` (the SCAN sizes, relative
positions, untrained: decoding cost does not depend on the weights) on one batch of SCAN test
examples, uncached (`cache=False`: the whole model reruns over all tokens at every step, which
is what `generate` did before the cache) and cached, interleaved (each round times all four in
turn, so slow phases of a shared machine hit them alike). Reports the median seconds per call
and the ratio uncached / cached of each model, measured in the same run, and checks that both
decode the same tokens. benchmarks/README.md quotes its CPU run.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import torch

from panm.models import build_model
from panm.speed import _cpu_name, time_interleaved
from panm.tasks import get_task
from panm.tasks.base import collate

MODELS = {
    "transformer": {"position": "relative"},
    "transformer+panm": {"transformer_position": "relative"},
}

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cpu")
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--out", default=None)
args = parser.parse_args()
torch.set_num_threads(1)
device = torch.device(args.device)
task = get_task("scan", split="length")
examples = task.examples("test")
examples = examples[:: max(1, len(examples) // args.batch)][: args.batch]  # spread over the part
batch = collate([task.encode(e) for e in examples]).to(device)
num_steps = batch.tgt.shape[1]
load_before = os.getloadavg()

steps, same_tokens, parameters = {}, {}, {}
for name, overrides in MODELS.items():
    torch.manual_seed(0)
    model = build_model(name, task, overrides).to(device).eval()
    parameters[name] = sum(p.numel() for p in model.parameters())
    outputs = [
        model.generate(batch.src, batch.src_mask, num_steps, bos_id=task.bos_id, cache=cache)
        for cache in (False, True)
    ]
    same_tokens[name] = bool(torch.equal(*outputs))
    for cache in (False, True):
        steps[f"{name} {'cached' if cache else 'uncached'}"] = lambda model=model, cache=cache: (
            model.generate(batch.src, batch.src_mask, num_steps, bos_id=task.bos_id, cache=cache)
        )
started = time.time()
seconds = time_interleaved(steps, repeats=args.rounds, calls=1, warmup=0, device=device)
medians = {key: statistics.median(values) for key, values in seconds.items()}
ratios = {name: medians[f"{name} uncached"] / medians[f"{name} cached"] for name in MODELS}
commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
).stdout.strip()
results = {
    "command": "python benchmarks/decode_cache.py "
    + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None),
    "commit": commit,
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "device": args.device,
    "cpu": _cpu_name(),
    "load_average_before_after": [load_before, os.getloadavg()],
    "task": "scan length split, test part (every k-th example)",
    "batch": args.batch,
    "decoding_steps": num_steps,
    "model_overrides": MODELS,
    "parameters": parameters,
    "same_tokens_cached_and_uncached": same_tokens,
    "seconds_per_generate_call": seconds,
    "median_seconds": medians,
    "uncached_over_cached": ratios,
}
print(f"{args.batch} sequences, {num_steps} steps, {args.rounds} interleaved rounds")
for key, value in medians.items():
    print(f"{key:<28} {value:8.3f} s/batch (median)")
for name, ratio in ratios.items():
    print(f"{name}: cached is {ratio:.1f}x faster; same tokens: {same_tokens[name]}")
if args.out:
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
