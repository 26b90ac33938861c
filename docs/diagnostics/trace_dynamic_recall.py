"""Dynamic Recall accuracy by how often the query occurs (docs/results.md, other tasks).

python docs/diagnostics/trace_dynamic_recall.py RUN LENGTH
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.base import collate

run, length = sys.argv[1], int(sys.argv[2])
model = load_checkpoint_model(run).eval()
task = get_task("dynamic_recall")
examples = fresh_examples(task, length, 500)  # panm eval's examples
batch = collate([task.encode(e) for e in examples])
with torch.no_grad():
    trace = model.trace(batch.src, batch.src_mask, num_steps=1)
right = (trace.logits.argmax(-1) == batch.tgt)[:, 0]
print(f"accuracy {right.float().mean():.3f}")
counts = torch.tensor([e["seq"].count(e["query"]) for e in examples])
for count in counts.unique().tolist():
    chosen = counts == count
    print(
        f"query occurs {count}x: {int(chosen.sum())} sequences, accuracy "
        f"{right[chosen].float().mean():.3f}"
    )
after_first = torch.tensor([e["seq"].index(e["query"]) + 1 for e in examples])
mode2 = trace.mode2_weights[:, 0, 0].argmax(-1)
print(
    f"Mode-2 argmax on the slot after the first occurrence: "
    f"{(mode2 == after_first).float().mean():.3f}"
)
first = after_first - 1
wrong = ~right
print(
    f"wrong answers: {int(wrong.sum())}; Mode-2 argmax after the first occurrence's next slot in "
    f"{int((wrong & (mode2 > after_first)).sum())}, before it in "
    f"{int((wrong & (mode2 < after_first)).sum())}"
)
for low, high in [(0, 5), (5, 10), (10, 20), (20, 40), (40, 100)]:
    chosen = (first >= low) & (first < high)
    if chosen.any():
        print(
            f"first occurrence at index {low}-{high - 1}: {int(chosen.sum())} sequences, "
            f"accuracy {right[chosen].float().mean():.3f}"
        )
