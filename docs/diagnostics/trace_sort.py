"""Mode-2 reads of a sorting run, step by step (docs/results.md, the sorting attempt).

python docs/diagnostics/trace_sort.py RUN TASK LENGTH
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.base import collate

run, task_name, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, task = load_checkpoint_model(run).eval(), get_task(task_name)
examples = fresh_examples(task, length, 500)  # panm eval's examples
batch = collate([task.encode(e) for e in examples])
with torch.no_grad():
    trace = model.trace(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
for b in range(2):
    weights = trace.mode2_weights[b, :, 0]  # (T, L)
    print(examples[b])
    print("  Mode-2 slot per step:", weights.argmax(-1).tolist())
    print("  largest weight:", [round(w, 2) for w in weights.max(-1).values.tolist()])
    print("  output:", trace.logits[b].argmax(-1).tolist(), "target:", batch.tgt[b].tolist())
largest = trace.mode2_weights[:, :, 0].max(-1).values.mean(0)  # (T,)
print("mean largest Mode-2 weight per step:", [round(w, 2) for w in largest.tolist()])
wrong = (trace.logits.argmax(-1) != batch.tgt).float().mean(0)
print("share of sequences wrong at each step:", [round(w, 2) for w in wrong.tolist()])
