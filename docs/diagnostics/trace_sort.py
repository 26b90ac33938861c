"""Mode-2 reads of a sorting run, step by step (docs/results.md, "The sorting tasks").

python docs/diagnostics/trace_sort.py RUN TASK LENGTH

For `panm eval`'s examples of one length: how often Mode-2's largest weight is on the slot the
sorted order reads at that step, at which step the first wrong slot comes, how often the output
is wrong at each step, and how sharp the reads are (the mean largest weight per step).
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
weights = trace.mode2_weights[:, :, 0]  # (B, T, L): the first Mode-2 head
read = weights.argmax(-1)
sorted_slots = torch.tensor(
    [sorted(range(length), key=example[task.key].__getitem__) for example in examples]
)
right = read == sorted_slots
print(f"slot right at {right.float().mean():.3f} of the steps")
print(f"every slot right in {right.all(1).float().mean():.3f} of the sequences")
exact = (trace.logits.argmax(-1) == batch.tgt).all(1)
print(f"sequence exact match {exact.float().mean():.3f}")
wrong = ~right
first_wrong = wrong.float().argmax(1)[wrong.any(1)]
print("first wrong step (count per step):", torch.bincount(first_wrong, minlength=length).tolist())
output_wrong = (trace.logits.argmax(-1) != batch.tgt).float().mean(0)  # (T,)
print("share of sequences wrong at each step:", [round(w, 2) for w in output_wrong.tolist()])
largest = weights.max(-1).values.mean(0)  # (T,)
print("mean largest Mode-2 weight per step:", [round(w, 2) for w in largest.tolist()])
