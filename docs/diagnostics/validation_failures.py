"""Which validation examples a PANM run's checkpoint fails at the bases of a validation rule
(docs/chomsky.md, "Choosing the checkpoint").

    python docs/diagnostics/validation_failures.py RUN KIND [--which latest]

RUN is a run directory; KIND one of zero, random, carry (`TrainConfig.valid_base`). Decodes the
run's own validation examples as its validation would under that rule (the same chunks, the
same base draws from the run's seed) and prints the share exact, then each failed example as
(base, length, top bit): the highest address bit that its walk, including the move past its
last slot, carries into (10 of 10 bits: the wrap-around from the last address to 0).
"""

import argparse
import contextlib

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import batch_correct, predict_ids
from panm.memory.panm import validation_bases
from panm.tasks import get_task
from panm.tasks.base import collate
from panm.training import VALID_CHUNK, read_run_config, validation_examples

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("kind", choices=["zero", "random", "carry"])
parser.add_argument("--which", default="best", choices=["best", "latest"])
args = parser.parse_args()
torch.set_num_threads(1)
config = read_run_config(args.run)
task = get_task(config.task, **config.task_options)
model = load_checkpoint_model(args.run, args.which).eval()
size = model.memory.address_bank.size
examples = validation_examples(task, config)


def top_bit(base: int, length: int) -> int:
    """The highest bit a walk from `base` over `length` slots and one move past them carries
    into (0: none)."""
    ends = [(base + i) % size for i in range(1, length + 1)]
    return max(((a & -a).bit_length() - 1 if a else size.bit_length() - 1) for a in ends)


bases = contextlib.nullcontext()
if args.kind != "zero":
    bases = validation_bases(model, args.kind, config.seed)
failed, exact = [], 0
with bases, torch.no_grad():
    for start in range(0, len(examples), VALID_CHUNK):
        chunk = examples[start : start + VALID_CHUNK]
        batch = collate([task.encode(e) for e in chunk])
        state = torch.get_rng_state()  # the trace draws the bases that decoding then redraws
        addresses = model.trace(batch.src, batch.src_mask, num_steps=1).addresses[:, 0]
        torch.set_rng_state(state)
        ok, _ = batch_correct(predict_ids(model, task, batch), batch)
        weights = 2 ** torch.arange(addresses.shape[-1] - 1, -1, -1)
        for row, (good, example) in enumerate(zip(ok.tolist(), chunk, strict=True)):
            exact += good
            if not good:
                base, length = int(addresses[row] @ weights.to(addresses)), len(example["seq"])
                failed.append((base, length, top_bit(base, length)))
print(f"{args.which} at {args.kind} bases: {exact / len(examples):.3f} exact")
print("failed (base, length, top bit):", sorted(failed))
