"""Pointer walk of a run on fresh development examples (docs/chomsky.md, "duplicate_string").

    python docs/diagnostics/trace_walk.py RUN TASK LENGTH [COUNT] [--soft] [--top STEPS]

RUN is a run directory. Prints each example, then for every Mode-1 and Mode-2 pointer its
argmax slot per output step and its largest weight for the first 12 steps (eval mode, base 0).
--soft walks with soft pointers (as in training) instead of the run's own evaluation pointers;
--top 98,99 also prints the three largest weights of every Mode-1 pointer at those steps.
"""

import argparse
import dataclasses

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.viz import attention_maps

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("task")
parser.add_argument("length", type=int)
parser.add_argument("count", type=int, nargs="?", default=2)
parser.add_argument("--soft", action="store_true")
parser.add_argument("--top", default="")
args = parser.parse_args()
torch.set_num_threads(1)
model = load_checkpoint_model(args.run)
if args.soft:
    model.memory.config = dataclasses.replace(model.memory.config, eval_pointers="soft")
top_steps = [int(step) for step in args.top.split(",") if step]
task = get_task(args.task)
for example in fresh_examples(task, args.length, args.count, 0):
    print(example)
    for name, weights in attention_maps(model, task, example).items():
        top = weights.max(dim=-1)
        slots = [int(i) for i in top.indices]
        print(f"  {name}: slots {slots}, weights {[round(float(v), 2) for v in top.values[:12]]}")
        for step in top_steps if name.startswith("mode-1") else []:
            values, indices = weights[step].topk(3)
            pairs = [(int(i), round(float(v), 3)) for i, v in zip(indices, values, strict=True)]
            print(f"    step {step}: {pairs}")
