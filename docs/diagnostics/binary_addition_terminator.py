"""How a binary_addition run knows where the sum ends (docs/chomsky.md, "binary_addition").

    python docs/diagnostics/binary_addition_terminator.py RUN [--length 30] [--count 600]
        [--long 60,100]

The answer n + m is written lowest digit first without its high zeros, then the terminator 2.
When the longer number has high zeros (about half the examples), the terminator comes before
the pointers have read them: a model that emits it on time knows that no 1 is left, which no
digit read so far says. On COUNT development examples of LENGTH (the dev set of `panm eval`,
seed 0; RUN is a run or checkpoint folder of a PANM with a controller started from memory),
prints
1. exact match by "gap", the longer number's digits past the answer's end;
2. for the examples of gap >= 3 whose longer number's top digit is 0, exact match and the
   share whose first terminator moved when the controller's start state is computed from
   another sequence of the same length: (a) the same with that top digit set to 1 (one more 1,
   beyond the sum: a model that counts the 1s it reads against the total in its start state
   ends too late), (b) the same with a 1 and a 0 of the first number, below the terminator,
   swapped (the same counts);
3. at each --long length, for the examples that are not exact, the first wrong output position
   minus the target's terminator position, and how often that first wrong token is a
   terminator (the answer stopped early).
"""

import argparse
import random
import statistics
from collections import defaultdict

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples, predict_ids
from panm.tasks import get_task
from panm.tasks.base import collate
from panm.tasks.chomsky import BinaryAdditionTask

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--length", type=int, default=30)
parser.add_argument("--count", type=int, default=600)
parser.add_argument("--long", default="60,100")
args = parser.parse_args()
torch.set_num_threads(1)
model = load_checkpoint_model(args.run).eval()
task = get_task("binary_addition")
PLUS, TERMINATOR = BinaryAdditionTask.PLUS, 2
memory = model.memory
own_start = memory._initial_controller_state


def predict(examples: list[dict], start_from: list[dict] | None = None) -> torch.Tensor:
    """Greedy outputs; with start_from, the controller starts from the state that the
    sequences of start_from (one per example, the same lengths) give."""
    if start_from is not None:
        captured = []

        def capture(*a, **k):
            captured.append(own_start(*a, **k))
            return captured[-1]

        memory._initial_controller_state = capture
        predict_ids(model, task, collate([task.encode(e) for e in start_from]))
        memory._initial_controller_state = lambda *a, **k: captured[-1]
    try:
        return predict_ids(model, task, collate([task.encode(e) for e in examples]))
    finally:
        memory._initial_controller_state = own_start


def exact(examples: list[dict], predicted: torch.Tensor) -> list[bool]:
    batch = collate([task.encode(e) for e in examples])
    return (((predicted != batch.tgt) & batch.tgt_mask).sum(dim=1) == 0).tolist()


def terminator(row: list[int]) -> int:
    return row.index(TERMINATOR) if TERMINATOR in row else -1


examples = fresh_examples(task, args.length, args.count, 0)
by_gap = defaultdict(list)
for example, ok in zip(examples, exact(examples, predict(examples)), strict=True):
    seq = example["seq"]
    plus = seq.index(PLUS)
    gap = max(plus, len(seq) - plus - 1) - terminator(task._target(example))
    by_gap[min(gap, 4)].append(ok)
print(f"1. exact match by gap at length {args.length} (gap 4: 4 or more)")
for gap in sorted(by_gap):
    print(f"  gap {gap}: {len(by_gap[gap])} examples, {statistics.mean(by_gap[gap]):.3f} exact")

rng = random.Random(0)
chosen, one_more, swapped = [], [], []
for example in examples:
    seq = example["seq"]
    plus, end = seq.index(PLUS), terminator(task._target(example))
    top = plus - 1 if plus >= len(seq) - plus - 1 else len(seq) - 1
    first_number = range(min(plus, end))
    ones = [i for i in first_number if seq[i] == 1]
    zeros = [i for i in first_number if seq[i] == 0]
    if max(plus, len(seq) - plus - 1) - end < 3 or seq[top] != 0 or not ones or not zeros:
        continue
    more = list(seq)
    more[top] = 1
    same = list(seq)
    i, j = rng.choice(ones), rng.choice(zeros)
    same[i], same[j] = 0, 1
    chosen.append(example)
    one_more.append({"seq": more})
    swapped.append({"seq": same})
targets = [terminator(task._target(e)) for e in chosen]
print(f"2. {len(chosen)} examples of gap >= 3 with a top 0: exact, terminator moved")
for name, start_from in [
    ("own start state", None),
    ("start state with one more 1", one_more),
    ("start state with a 1 and a 0 swapped", swapped),
]:
    predicted = predict(chosen, start_from)
    moved = [terminator(row) != t for row, t in zip(predicted.tolist(), targets, strict=True)]
    ok = exact(chosen, predicted)
    print(f"  {name}: {statistics.mean(ok):.3f} exact, {statistics.mean(moved):.3f} moved")

print("3. first wrong output minus the terminator's position, examples not exact")
for length in [int(n) for n in args.long.split(",") if n]:
    long_examples = fresh_examples(task, length, 100, 0)
    batch = collate([task.encode(e) for e in long_examples])
    predicted = predict(long_examples)
    wrong = (predicted != batch.tgt) & batch.tgt_mask
    offsets, early_stops = [], 0
    for example, row, output in zip(long_examples, wrong, predicted, strict=True):
        if row.any():
            first = int(row.nonzero()[0])
            offsets.append(first - terminator(task._target(example)))
            early_stops += int(output[first]) == TERMINATOR
    if offsets:
        quartiles = statistics.quantiles(offsets, n=4) if len(offsets) > 1 else offsets * 3
        print(
            f"  length {length}: {len(offsets)} of 100 not exact; offset min {min(offsets)}, "
            f"quartiles {quartiles}, max {max(offsets)}; the first wrong token is a "
            f"terminator in {early_stops}"
        )
    else:
        print(f"  length {length}: all 100 exact")
