"""Exact match of a PANM run by base address (docs/chomsky.md, "duplicate_string").

    python docs/diagnostics/exact_by_base.py RUN TASK LENGTH BASES [COUNT] [--which latest]

RUN is a run directory or a model folder. Places COUNT (default 64) fresh development examples
of LENGTH at each base address in BASES (comma-separated; slot i gets address base + i) and
prints the share decoded exactly, teacher-forced where the model reads its previous token, with
the run's own evaluation pointers. Training draws a base per sequence, so a base that fails here
is a part of the training distribution the model has not fitted; validation (base 0) never sees
it, and a test length whose walk crosses the same addresses fails the same way.
"""

import argparse
import functools

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import batch_correct, fresh_examples
from panm.models.base import forward_batch
from panm.tasks import get_task
from panm.tasks.base import collate

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("task")
parser.add_argument("length", type=int)
parser.add_argument("bases")
parser.add_argument("count", type=int, nargs="?", default=64)
parser.add_argument("--which", default="best", choices=["best", "latest"])
args = parser.parse_args()
torch.set_num_threads(1)
model = load_checkpoint_model(args.run, which=args.which).eval()
task = get_task(args.task)
batch = collate([task.encode(e) for e in fresh_examples(task, args.length, args.count, 0)])
cells = []
for base in (int(b) for b in args.bases.split(",")):
    with torch.no_grad():
        trace = forward_batch(
            functools.partial(model.trace, base_address=base), batch, model.decoder_start_id(task)
        )
    exact, _ = batch_correct(trace.logits.argmax(-1), batch)
    cells.append(f"{base}: {100 * exact.float().mean():.0f}")
print(f"{args.task}, length {args.length}, {args.count} examples; exact % by base address:")
print("  " + ", ".join(cells))
