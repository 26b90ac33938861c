"""Mode-2 reads of a bucket_sort run against its outputs (docs/chomsky.md, "bucket_sort").

    python docs/diagnostics/trace_bucket_sort.py RUN LENGTH [COUNT]

On COUNT development examples of LENGTH (eval mode, base 0): for each Mode-2 head, how often
the token under its top slot is the sorted target's token at that step, how often the output
is, and, for the first example, the target, each head's read tokens and the output.
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.algorithmic import NUM_SPECIALS
from panm.tasks.base import collate

run, length = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 20
torch.set_num_threads(1)
model, task = load_checkpoint_model(run).eval(), get_task("bucket_sort")
batch = collate([task.encode(e) for e in fresh_examples(task, length, count, 0)])
with torch.no_grad():
    trace = model.trace(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
output = trace.logits.argmax(-1)  # (B, T)
tokens = batch.src[..., 0] - NUM_SPECIALS  # (B, L)
print(f"length {length}, {count} examples")
print(f"output = target: {(output == batch.tgt).float().mean():.4f}")
reads = []
for head in range(trace.mode2_weights.shape[2]):
    read = tokens.gather(1, trace.mode2_weights[:, :, head].argmax(-1))  # (B, T)
    reads.append(read)
    print(f"head {head}: read = target {(read == batch.tgt).float().mean():.4f}", end=", ")
    print(f"output = read {(output == read).float().mean():.4f}")
wrong = (output[0] != batch.tgt[0]).nonzero().flatten().tolist()
print(f"example 0, steps where the output is wrong: {wrong}")
print("target:", batch.tgt[0].tolist())
for head, read in enumerate(reads):
    print(f"head {head}:", read[0].tolist())
print("output:", output[0].tolist())
