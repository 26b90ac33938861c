"""The Mode-2 score a sorting run gives each (token, key) slot (docs/results.md, "The sorting
tasks").

python docs/diagnostics/sort_scores.py RUN [LENGTH]

For a run with `panm.mode2_query=constant` and memory_source="embedding": the score of a slot is
a token term plus a key term (the memory is the sum of the two field embeddings and the key
projection is linear). Prints how much the token term varies (it should not matter) and how
often the key term puts two keys k apart in the wrong order. With LENGTH, also how many pairs of
ids at most 2 apart an ID Sort test sequence of that length holds (`panm eval`'s examples).
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.tasks import get_task
from panm.tasks.algorithmic import NUM_SPECIALS

model = load_checkpoint_model(sys.argv[1]).eval()
tokens, keys = (table.weight.detach() for table in model.embedding.tables)
access = model.memory.relational
with torch.no_grad():
    # (tokens, key values): one row per token, one column per key value (field value 1 + key)
    symbols = range(NUM_SPECIALS, len(tokens))
    rows = [access.key(tokens[t] + keys[1:]) @ access.query for t in symbols]
    scores = torch.stack(rows) / access.key_dim**0.5
token_term, key_term = scores.mean(1), scores.mean(0)
print(f"token term: spread {token_term.max() - token_term.min():.3f}")
steps = key_term[1:] - key_term[:-1]
key_range = key_term.max() - key_term.min()
print(f"key term: range {key_range:.1f}, median step {steps.abs().median():.3f}")
falling = steps.mean() < 0  # the head reads the highest score first
for k in (1, 2, 5, 10):
    gap = key_term[k:] - key_term[:-k]
    wrong = (gap > 0) if falling else (gap < 0)
    print(f"keys {k} apart in the wrong order: {wrong.float().mean():.3f}")

if len(sys.argv) > 2:
    length = int(sys.argv[2])
    examples = fresh_examples(get_task("id_sort"), length, 500)
    close = [
        sum(abs(a - b) <= 2 for i, a in enumerate(e["ids"]) for b in e["ids"][i + 1 :])
        for e in examples
    ]
    mean, holding = sum(close) / len(close), sum(c > 0 for c in close) / len(close)
    print(f"ID Sort sequences of {length}: {mean:.1f} pairs of ids at most 2 apart on average;")
    print(f"{holding:.2f} of them hold at least one")
