"""Mix pointer trace, by op (docs/results.md, diagnosis 9-10).

    python docs/diagnostics/trace_mix.py RUN LENGTH [KEY=VALUE ...]

RUN is a run directory; KEY=VALUE are evaluation settings as in `panm eval --set`. Prints, for
copy and for reverse, each pointer's argmax slot and largest weight per step (the walk is the
same in every sequence at base 0), the sequence accuracy and the wrong sequences per output step.
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.base import collate

run, length = sys.argv[1], int(sys.argv[2])
settings = dict(setting.split("=", 1) for setting in sys.argv[3:])
model = load_checkpoint_model(run, overrides=settings).eval()
task = get_task("mix")
examples = fresh_examples(task, length, 500)  # panm eval's examples
for op in ("copy", "reverse"):
    batch = collate([task.encode(e) for e in examples if e["op"] == op])
    with torch.no_grad():
        trace = model.trace(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    wrong = trace.logits.argmax(-1) != batch.tgt
    print(f"{op}: {len(batch.tgt)} sequences, accuracy {1 - wrong.any(1).float().mean():.3f}")
    for pointer in range(trace.mode1_weights.shape[2]):
        weights = trace.mode1_weights[0, :, pointer]
        print(f"  pointer {pointer} slot per step:", weights.argmax(-1).tolist())
        print("    largest weight:", [round(w, 2) for w in weights.max(-1).values.tolist()])
    print("  wrong sequences per output step:", wrong.sum(0).tolist())
