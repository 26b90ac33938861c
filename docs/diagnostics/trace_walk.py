"""Pointer walk of a run on fresh development examples (docs/chomsky.md, "duplicate_string").

    python docs/diagnostics/trace_walk.py RUN TASK LENGTH [COUNT]

RUN is a run directory. Prints each example, then for every Mode-1 and Mode-2 pointer its
argmax slot per output step and its largest weight for the first 12 steps (eval mode, base 0).
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.viz import attention_maps

run, task_name, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = int(sys.argv[4]) if len(sys.argv) > 4 else 2
torch.set_num_threads(1)
model = load_checkpoint_model(run)
task = get_task(task_name)
for example in fresh_examples(task, length, count, 0):
    print(example)
    for name, weights in attention_maps(model, task, example).items():
        top = weights.max(dim=-1)
        slots = [int(i) for i in top.indices]
        print(f"  {name}: slots {slots}, weights {[round(float(v), 2) for v in top.values[:12]]}")
