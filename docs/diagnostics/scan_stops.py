"""Where a SCAN run's stop goes wrong (docs/scan.md, "Where the stop goes wrong").

    python docs/diagnostics/scan_stops.py RUN SPLIT

RUN is a run directory (its best checkpoint), SPLIT its cut-off split (cutoff-26, ...). Decodes
every pair of the split's test part greedily, with 10 steps to spare, and sorts each output by
where its first end-of-sequence token falls against the target's length: "right" (and whether
the actions before it are right), "early" or "late" (and whether the actions up to the earlier
of the two ends are right). Then the most common (target length, stop) pairs among the outputs
whose actions are right but whose stop is not.
"""

import sys
from collections import Counter

import torch

from panm.checkpoint import load_checkpoint_model
from panm.tasks import get_task
from panm.tasks.base import collate

run, split = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
model = load_checkpoint_model(run).eval()
task = get_task("scan", split=split)
examples = task.examples("test")
kinds: Counter = Counter()
misplaced_stops: Counter = Counter()
for start in range(0, len(examples), 256):
    batch = collate([task.encode(e) for e in examples[start : start + 256]])
    with torch.no_grad():
        outputs = model.generate(
            batch.src, batch.src_mask, batch.tgt.shape[1] + 10, bos_id=model.decoder_start_id(task)
        )
    lengths = (batch.tgt_mask.sum(dim=1) - 1).tolist()  # targets end with EOS
    for output, target, length in zip(outputs.tolist(), batch.tgt.tolist(), lengths, strict=True):
        stop = output.index(task.eos_id) if task.eos_id in output else len(output)
        shared = min(stop, length)
        actions_right = output[:shared] == target[:shared]
        where = "right" if stop == length else "early" if stop < length else "late"
        kinds[f"{where}, actions {'right' if actions_right else 'wrong'}"] += 1
        if where != "right" and actions_right:
            misplaced_stops[(length, stop)] += 1
print(f"{run} on {split}: {len(examples)} test pairs")
for kind, count in sorted(kinds.items()):
    print(f"  stop {kind}: {count}")
print("  most common (target length, stop) with the actions right and the stop wrong:")
for (length, stop), count in misplaced_stops.most_common(12):
    print(f"    {length} -> {stop}: {count}")
