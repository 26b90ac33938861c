"""Where ID Sort goes wrong at a length: inversions of the Mode-2 score (docs/results.md, issue 21).

    python docs/diagnostics/id_sort_inversions.py RUN LENGTH [COUNT]

RUN is an ID Sort run of the sorting recipe (`panm.mode2_query=constant`, hard selection with
exclusion, token-embedding memory), tested on the first COUNT (default 300) of `panm eval`'s
development examples of LENGTH. With a constant query over token-embedding memory the Mode-2
score of a slot is exactly a token term plus an id term, s = a(token) + b(id), and hard
selection with exclusion outputs the slots in falling score order, so a sequence is exact if
and only if its slots' scores fall with the id. Prints:

- that the model's Mode-2 reads are the slots in falling score order (checks the above);
- sequence exact match, the exact match if the token term were constant (b alone), the exact
  match if b's values were sorted to fall with the id (the token term kept), and the first
  wrong output step (histogram in steps of LENGTH / 8);
- at each sequence's first wrong step: how far the id read is from the right one, the score
  margin, and whether b alone already inverts the two ids or the token term flipped them;
- the pairs of neighbouring ids (k, k + 1) out of 255 that b inverts, per range of 32 ids;
- exact match by the number of id pairs 1 apart that a sequence holds, and the mean number of
  pairs of its ids in the wrong score order.
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.base import collate

run, length = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 300
torch.set_num_threads(1)
model, task = load_checkpoint_model(run).eval(), get_task("id_sort")
examples = fresh_examples(task, length, count)  # the first COUNT of panm eval's examples
batch = collate([task.encode(e) for e in examples])
access = model.memory.relational
tokens, id_table = (table.weight.detach() for table in model.embedding.tables)
with torch.no_grad():
    trace = model.trace(batch.src, batch.src_mask, num_steps=length)
    scale = access.key_dim**0.5
    token_term = (tokens @ access.key.weight.t()) @ access.query / scale  # (token ids,)
    id_term = (id_table @ access.key.weight.t() + access.key.bias) @ access.query / scale
ids = torch.tensor([e["ids"] for e in examples])  # (B, L)
score = token_term[batch.src[..., 0]] + id_term[batch.src[..., 1]]  # (B, L): s = a + b
id_score = id_term[batch.src[..., 1]]
right_order = ids.argsort(1)  # the slots by ascending id: what each step should read
read = trace.mode2_weights[:, :, 0].argmax(-1)  # (B, T) the slot read at each step
print(f"length {length}, {count} sequences")
same = (read == score.argsort(1, descending=True)).all(1).float().mean()
print(f"Mode-2 reads in falling score order in {same:.3f} of the sequences")
exact = (trace.logits.argmax(-1) == batch.tgt).all(1)
by_id_term = (id_score.argsort(1, descending=True) == right_order).all(1)
print(f"sequence exact match {exact.float().mean():.3f}; with the id term alone (token term")
print(f"  constant) {by_id_term.float().mean():.3f}; slot right at every step in ", end="")
print(f"{(read == right_order).all(1).float().mean():.3f}")
monotone = id_term.clone()  # the id term's own values, sorted to fall with the id
monotone[1:] = id_term[1:].sort(descending=True).values
sorted_score = token_term[batch.src[..., 0]] + monotone[batch.src[..., 1]]
by_monotone = (sorted_score.argsort(1, descending=True) == right_order).all(1)
print("exact with the id term's values sorted to fall with the id, token term kept: ", end="")
print(f"{by_monotone.float().mean():.3f}")
wrong = read != right_order
failed = wrong.any(1)
first = wrong.float().argmax(1)[failed]  # (N,) each failed sequence's first wrong step
bins = max(1, length // 8)
print(f"first wrong step, per {bins} steps:", torch.bincount(first // bins).tolist())
rows = failed.nonzero()[:, 0]
got, want = read[rows, first], right_order[rows, first]
gap = ids[rows, got] - ids[rows, want]
margin = score[rows, got] - score[rows, want]
id_inverted = id_score[rows, got] > id_score[rows, want]
print(
    f"at the first wrong step ({len(rows)} sequences): id read - right id = 1 in "
    f"{(gap == 1).sum()}, 2 in {(gap == 2).sum()}, 3-5 in {((gap >= 3) & (gap <= 5)).sum()}, "
    f"more in {(gap > 5).sum()}; median score margin {margin.median():.3f}; the id term alone "
    f"inverts them in {int(id_inverted.sum())}, the token term flips them in "
    f"{int((~id_inverted).sum())}"
)
steps = id_term[2:] - id_term[1:-1]  # b(k + 1) - b(k) for ids k = 0..254 (table row 1 + k)
inverted = steps > 0  # the head reads the highest score first, so b must fall with the id
print("neighbouring ids inverted by the id term, per 32 ids:", end=" ")
print(
    [int(inverted[i : i + 32].sum()) for i in range(0, 255, 32)], f"(total {int(inverted.sum())})"
)
medians = [round(steps[i : i + 32].abs().median().item(), 3) for i in range(0, 255, 32)]
print(f"id term: range {id_term[1:].max() - id_term[1:].min():.1f}; |step| between neighbouring")
print(f"  ids: median {steps.abs().median():.3f}, per 32 ids {medians}")
print(f"token term spread {token_term[4:].max() - token_term[4:].min():.3f}")
sorted_ids = ids.sort(1).values
ones = (sorted_ids[:, 1:] - sorted_ids[:, :-1] == 1).sum(1)
for low, high in [(0, 1), (1, 3), (3, 10), (10, 30), (30, 100)]:
    chosen = (ones >= low) & (ones < high)
    if chosen.any():
        print(
            f"sequences with {low}-{high - 1} pairs of ids 1 apart: {int(chosen.sum())}, "
            f"exact {exact[chosen].float().mean():.3f}"
        )
ordered = score.gather(1, right_order)  # (B, L) scores in id order: must fall
pairs_wrong = (ordered.unsqueeze(2) < ordered.unsqueeze(1)).triu(1).sum((1, 2)).float()
print(f"pairs of ids in the wrong score order per sequence: mean {pairs_wrong.mean():.2f}")
