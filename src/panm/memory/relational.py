"""Mode-2 (relational) access: content attention over memory, queried by the Mode-1 reads.

    w2_t = softmax_i( query([v1_t of every Mode-1 pointer]) . key(M[i]) / sqrt(K) )
    v2_t = sum_i w2_t[i] M[i],   p2_t = sum_i w2_t[i] A[i]

Mode-1 finds a slot by where it is; Mode-2 then finds slots by what they hold relative to it
(the slot with the same key, the smallest priority, ...).

With `exclusion` (an option beyond the paper), a slot's Mode-2 score drops by a learned scale
times the weight each head has already put on it at earlier steps,

    w2_t = softmax_i( score_t[i] - s * sum_{u<t} w2_u[i] ),   s = softplus(learned) > 0,

so a head that reads one slot per step reads each slot once: a constant query that scores slots
by a key then reads them in key order (selection sort), at any length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RelationalAccess(nn.Module):
    """H Mode-2 heads. Memory keys are projected once per sequence with `keys`."""

    def __init__(
        self, memory_dim: int, num_mode1: int, num_heads: int, key_dim: int, exclusion: bool = False
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.query = nn.Linear(num_mode1 * memory_dim, num_heads * key_dim)
        self.key = nn.Linear(memory_dim, key_dim)
        # softplus(10) ~ 10: a slot read with weight 1 loses 10 from its score at later steps.
        self.exclusion_scale = nn.Parameter(torch.tensor(10.0)) if exclusion else None

    def keys(self, memory: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, K)."""
        return self.key(memory)

    def forward(self, mode1_reads: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Mode-1 reads (B, T, G, D), keys (B, L, K), valid-slot mask (B, L) -> weights
        (B, T, H, L) (exactly 0 on invalid slots)."""
        batch, steps = mode1_reads.shape[:2]
        query = self.query(mode1_reads.flatten(2)).view(batch, steps * self.num_heads, -1)
        scores = query.bmm(keys.transpose(1, 2)) / math.sqrt(self.key_dim)
        scores = scores.view(batch, steps, self.num_heads, -1)
        invalid = ~mask[:, None, None, :]
        if self.exclusion_scale is None:
            return scores.masked_fill(invalid, float("-inf")).softmax(dim=-1)
        scale = nn.functional.softplus(self.exclusion_scale)
        read_so_far = scores.new_zeros(batch, 1, self.num_heads, scores.shape[-1])
        weights = []
        for t in range(steps):
            step_scores = scores[:, t : t + 1] - scale * read_so_far
            w = step_scores.masked_fill(invalid, float("-inf")).softmax(dim=-1)
            read_so_far = read_so_far + w
            weights.append(w)
        return torch.cat(weights, dim=1)
