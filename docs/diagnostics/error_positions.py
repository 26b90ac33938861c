"""Where a run's outputs go wrong on development test examples (docs/chomsky.md,
"duplicate_string").

    python docs/diagnostics/error_positions.py RUN TASK LENGTH [COUNT] [--which latest]

RUN is a run directory of TASK. Decodes COUNT (default 100) development test examples of LENGTH (the
dev set of `panm eval`, seed 0) as `panm eval` does and prints the share exact, then for each
failed example the output positions of its wrong tokens (0-based; at most 12 shown) and their
count.
"""

import argparse

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples, predict_ids
from panm.tasks import get_task
from panm.tasks.base import collate

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("task")
parser.add_argument("length", type=int)
parser.add_argument("count", type=int, nargs="?", default=100)
parser.add_argument("--which", default="best", choices=["best", "latest"])
args = parser.parse_args()
torch.set_num_threads(1)
model, task = load_checkpoint_model(args.run, args.which).eval(), get_task(args.task)
examples = fresh_examples(task, args.length, args.count, 0)
batch = collate([task.encode(e) for e in examples])
wrong = (predict_ids(model, task, batch) != batch.tgt) & batch.tgt_mask
failed = [(row, positions.nonzero().flatten().tolist()) for row, positions in enumerate(wrong)]
failed = [(row, positions) for row, positions in failed if positions]
print(f"{task.name} at length {args.length}: {1 - len(failed) / len(examples):.3f} exact")
for row, positions in failed:
    print(f"  example {row}: {len(positions)} wrong at {positions[:12]}")
