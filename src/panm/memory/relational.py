"""Mode-2 (relational) access: content attention over memory, queried by the Mode-1 reads.

    w2_t = softmax_i( query([v1_t of every Mode-1 pointer]) . key(M[i]) / sqrt(K) )
    v2_t = sum_i w2_t[i] M[i],   p2_t = sum_i w2_t[i] A[i]

Mode-1 finds a slot by where it is; Mode-2 then finds slots by what they hold relative to it
(the slot with the same key, the smallest priority, ...).

Four options beyond the paper, for selecting slots in the order of their contents:

- `constant_query`: each head's query is a learned vector, the same at every step, instead of a
  projection of the Mode-1 reads: a head then ranks slots by their content alone.
- `exclusion`: a head avoids the slots it has already read. With soft selection, a slot's score
  drops by a learned scale times the weight the head has already put on it at earlier steps,

      w2_t = softmax_i( score_t[i] - s * sum_{u<t} w2_u[i] ),   s = softplus(learned) > 0;

  with hard selection, a slot once read is masked out for that head (until the head has read
  every valid slot, when it starts over). A head that reads one slot per step then reads each
  slot once, in the order of its scores: a constant query that scores slots by a key reads them
  in key order (selection sort), at any length.
- `hard`: each head reads exactly one slot per step, its highest-scoring one (the first among
  exact ties), in training too; the gradient flows through the softmax as if the read were soft
  (straight-through). Soft exclusion fades once the early reads are not one-hot (every slot then
  carries some subtracted weight); hard selection is what a selection sort needs, and it is the
  same in training and evaluation.
- `tie_margin` (with `hard`): a head reads the first slot, in memory order, whose score is within
  the margin of the best one, so slots the scores do not tell apart (equal keys) are read in
  input order: with exclusion, a *stable* sort. Scores are unbounded, so the model sets the scale:
  it learns to separate different keys by more than the margin and equal keys by less.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RelationalAccess(nn.Module):
    """H Mode-2 heads. Memory keys are projected once per sequence with `keys`."""

    def __init__(
        self,
        memory_dim: int,
        num_mode1: int,
        num_heads: int,
        key_dim: int,
        exclusion: bool = False,
        hard: bool = False,
        tie_margin: float = 0.0,
        constant_query: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.exclusion = exclusion
        self.hard = hard
        self.tie_margin = tie_margin
        self.query = (
            nn.Parameter(torch.randn(num_heads * key_dim) / math.sqrt(key_dim))
            if constant_query
            else nn.Linear(num_mode1 * memory_dim, num_heads * key_dim)
        )
        self.key = nn.Linear(memory_dim, key_dim)
        # softplus(10) ~ 10: a slot read with weight 1 loses 10 from its score at later steps.
        soft_exclusion = exclusion and not hard
        self.exclusion_scale = nn.Parameter(torch.tensor(10.0)) if soft_exclusion else None

    def keys(self, memory: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, K)."""
        return self.key(memory)

    def forward(self, mode1_reads: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Mode-1 reads (B, T, G, D), keys (B, L, K), valid-slot mask (B, L) -> weights
        (B, T, H, L) (exactly 0 on invalid slots)."""
        batch, steps = mode1_reads.shape[:2]
        if isinstance(self.query, nn.Linear):
            query = self.query(mode1_reads.flatten(2))
        else:
            query = self.query.expand(batch, steps, -1)
        return self.attend(query, keys, mask)

    def attend(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """`forward` from the queries (B, T, H * K) rather than the reads."""
        batch, steps = query.shape[:2]
        query = query.reshape(batch, steps * self.num_heads, -1)
        scores = query.bmm(keys.transpose(1, 2)) / math.sqrt(self.key_dim)
        scores = scores.view(batch, steps, self.num_heads, -1)
        invalid = ~mask[:, None, None, :]
        if not self.exclusion:
            return self._select(scores.masked_fill(invalid, float("-inf")))
        if self.exclusion_scale is not None:  # soft exclusion
            scale = nn.functional.softplus(self.exclusion_scale)
            read_so_far = scores.new_zeros(batch, 1, self.num_heads, scores.shape[-1])
            weights = []
            for t in range(steps):
                step_scores = scores[:, t : t + 1] - scale * read_so_far
                w = step_scores.masked_fill(invalid, float("-inf")).softmax(dim=-1)
                read_so_far = read_so_far + w
                weights.append(w)
            return torch.cat(weights, dim=1)
        taken = invalid.expand(batch, 1, self.num_heads, -1)  # hard exclusion
        weights = []
        for t in range(steps):
            taken = taken & (~taken.all(dim=-1, keepdim=True) | invalid)  # all read: start over
            w = self._select(scores[:, t : t + 1].masked_fill(taken, float("-inf")))
            taken = taken | (w.detach() > 0.5)
            weights.append(w)
        return torch.cat(weights, dim=1)

    def _select(self, scores: Tensor) -> Tensor:
        """Masked scores (..., L) -> softmax weights, or one-hot on the top slot with the
        softmax's gradient when hard."""
        soft = scores.softmax(dim=-1)
        if not self.hard:
            return soft
        best = scores.max(dim=-1, keepdim=True).values
        near_best = scores >= best - self.tie_margin  # masked slots (-inf) never are
        top = near_best.float().argmax(dim=-1, keepdim=True)  # the first of them
        one_hot = torch.zeros_like(soft).scatter_(-1, top, 1.0)
        return one_hot + soft - soft.detach()
