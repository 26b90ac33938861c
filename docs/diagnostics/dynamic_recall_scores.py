"""Where Dynamic Recall goes wrong at a length: the Mode-2 scores (docs/results.md, issue 21).

    python docs/diagnostics/dynamic_recall_scores.py RUN LENGTH [COUNT]

RUN is a Dynamic Recall run of the recipe (forward-GRU memory, Mode-2 queried by the Mode-1
reads), tested on the first COUNT (default 300) of `panm eval`'s development examples of
LENGTH. The answer is the token in the slot after the query's first occurrence, which Mode-2
must score above every other slot. Prints:

- the accuracy and the slots the two Mode-1 pointers read (the same in every sequence);
- how often Mode-2's argmax is that slot, the accuracy when it is and when it is not (a soft
  read that mixes slots would fail with the argmax right), and the weight on that slot;
- when the argmax is wrong: how often it is the slot after a later occurrence, and the margin;
- the mean score of the right slot by where the first occurrence is, and for every later
  occurrence whether its next slot outscores the right one ("beats"), by where the first
  occurrence is, by how many slots back the previous occurrence is and by the later
  occurrence's own index.
"""

import itertools
import sys
from collections import defaultdict

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.base import collate

run, length = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 300
torch.set_num_threads(1)
model, task = load_checkpoint_model(run).eval(), get_task("dynamic_recall")
examples = fresh_examples(task, length, count)  # the first COUNT of panm eval's examples
batch = collate([task.encode(e) for e in examples])
access = model.memory.relational
with torch.no_grad():
    trace = model.trace(batch.src, batch.src_mask, num_steps=1)
    memory, _ = model._encode(batch.src, batch.src_mask)  # (B, L, D) the forward GRU's states
    mode1 = trace.mode1_weights[:, 0]  # (B, G, L)
    query = access.query(torch.einsum("bgl,bld->bgd", mode1, memory).flatten(1))  # (B, K)
    scores = torch.einsum("bk,blk->bl", query, access.keys(memory)) / access.key_dim**0.5
right = trace.logits.argmax(-1)[:, 0] == batch.tgt[:, 0]
print(f"length {length}, {count} sequences: accuracy {right.float().mean():.3f}")
slots, weights = mode1[0].argmax(-1).tolist(), mode1[0].max(-1).values.tolist()
print(f"Mode-1 pointers read slots {slots} (weights {weights}) of 0..{length + 1}")
occurrences = [[i for i, s in enumerate(e["seq"][:-1]) if s == e["query"]] for e in examples]
target = torch.tensor([occ[0] + 1 for occ in occurrences])  # the slot after the first one
mode2 = trace.mode2_weights[:, 0, 0]  # (B, L)
argmax = mode2.argmax(-1)
hit = argmax == target
print(
    f"Mode-2 argmax on the right slot in {hit.float().mean():.3f}; accuracy then "
    f"{right[hit].float().mean():.3f}, otherwise {right[~hit].float().mean():.3f}"
)
on_target = mode2.gather(1, target[:, None])[:, 0]
print(f"weight on the right slot: mean {on_target.mean():.3f}, median {on_target.median():.3f}")
after_later = torch.tensor(
    [a - 1 in occ[1:] for a, occ in zip(argmax.tolist(), occurrences, strict=True)]
)
target_score = scores.gather(1, target[:, None])[:, 0]
margin = (target_score - scores.gather(1, argmax[:, None])[:, 0])[~hit]
print(
    f"argmax wrong in {int((~hit).sum())}: after a later occurrence in "
    f"{int((~hit & after_later).sum())}; right slot's score below the winner's by median "
    f"{-margin.median():.2f} (below by less than 2 in {int((margin > -2).sum())})"
)
by_first, beats_first = defaultdict(list), defaultdict(list)
beats_gap, beats_at = defaultdict(list), defaultdict(list)
first_bins, gap_bins = (0, 5, 10, 15, 20, 30), (1, 3, 6, 11, 21, 41)
position_bins = (0, 10, 20, 40, 60)
for row, occ in enumerate(occurrences):
    first = max(b for b in first_bins if b <= occ[0])
    by_first[first].append(target_score[row].item())
    for previous, later in itertools.pairwise(occ):
        beats = scores[row, later + 1].item() > target_score[row].item()
        beats_first[first].append(beats)
        beats_gap[max(b for b in gap_bins if b <= later - previous)].append(beats)
        beats_at[max(b for b in position_bins if b <= later)].append(beats)


def ranges(bins: tuple[int, ...], table: dict, show) -> str:
    """One 'low-high: value' entry per bin that has data."""
    ends = [*bins[1:], None]
    return ", ".join(
        f"{low}-{'' if high is None else high - 1}: {show(table[low])}"
        for low, high in zip(bins, ends, strict=True)
        if table[low]
    )


print("right slot's mean score, by the first occurrence's index:")
print("  " + ranges(first_bins, by_first, lambda v: f"{sum(v) / len(v):.1f} ({len(v)})"))
print("a later occurrence's next slot beats the right one, by the first occurrence's index:")
print("  " + ranges(first_bins, beats_first, lambda v: f"{sum(v)}/{len(v)}"))
print("  by slots since the previous occurrence:")
print("  " + ranges(gap_bins, beats_gap, lambda v: f"{sum(v)}/{len(v)}"))
print("  by the later occurrence's index:")
print("  " + ranges(position_bins, beats_at, lambda v: f"{sum(v)}/{len(v)}"))
