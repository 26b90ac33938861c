"""Mode-2 (relational) access: content attention over memory, queried by the Mode-1 reads.

    w2_t = softmax_i( query([v1_t of every Mode-1 pointer]) . key(M[i]) / sqrt(K) )
    v2_t = sum_i w2_t[i] M[i],   p2_t = sum_i w2_t[i] A[i]

Mode-1 finds a slot by where it is; Mode-2 then finds slots by what they hold relative to it
(the slot with the same key, the smallest priority, ...).
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class RelationalAccess(nn.Module):
    """H Mode-2 heads. Memory keys are projected once per sequence with `keys`."""

    def __init__(self, memory_dim: int, num_mode1: int, num_heads: int, key_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.query = nn.Linear(num_mode1 * memory_dim, num_heads * key_dim)
        self.key = nn.Linear(memory_dim, key_dim)

    def keys(self, memory: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, K)."""
        return self.key(memory)

    def forward(self, mode1_reads: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Mode-1 reads (B, T, G, D), keys (B, L, K), valid-slot mask (B, L) -> weights
        (B, T, H, L) (exactly 0 on invalid slots)."""
        batch, steps = mode1_reads.shape[:2]
        query = self.query(mode1_reads.flatten(2)).view(batch, steps * self.num_heads, -1)
        scores = query.bmm(keys.transpose(1, 2)) / math.sqrt(self.key_dim)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(dim=-1)
        return scores.view(batch, steps, self.num_heads, -1)
