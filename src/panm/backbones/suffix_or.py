"""An encoder of slot flags that look ahead without summarising: "is some slot from here to the
next reset marked?", the same at any length.

A recurrent encoder read from the end can say at each slot what is still to come, but it can
also summarise the whole input at the first slot (a count, say), which does not hold at lengths
it was not trained on. Here each of k flags is an OR over the slots ahead: slot m marks flag j
with strength set_j(x_m) in (0, 1), and each slot passes the flags of the slots after it on
with strength keep_j(x_m) in (0, 1) (near 0: a reset, e.g. at a separator). Both are learned
maps of the slot's own embedding, never of a state, and a max (an OR) of marks cannot count, so
a flag's value depends on which marks lie ahead up to the next reset, not on how many or how far.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SuffixOrEncoder(nn.Module):
    """k suffix-OR flags per slot, projected to the slot width.

    flag_j(i) = max over slots m >= i of set_j(x_m) * prod_{i <= n < m} keep_j(x_n)

    computed for all slots at once in log space: with P_i = sum_{n < i} log keep_j(x_n),
    log flag_j(i) = max_{m >= i} (log set_j(x_m) + P_m) - P_i, one reversed cumulative max.
    forward: x (B, L, dim), mask (B, L) bool, right padding -> (B, L, dim): the flags (B, L, k)
    through a linear map, zeros on padding. A row's result does not depend on its padding.
    """

    def __init__(self, dim: int, flags: int) -> None:
        super().__init__()
        if flags < 1:
            raise ValueError(f"a suffix-OR encoder needs at least one flag, got {flags}")
        self.marks = nn.Linear(dim, 2 * flags)  # [set logits, keep logits]
        self.out = nn.Linear(flags, dim)

    def flags(self, x: Tensor, mask: Tensor) -> Tensor:
        """The flags (B, L, k) in [0, 1] of x (B, L, dim); 0 on padded slots."""
        set_logits, keep_logits = self.marks(x).chunk(2, dim=-1)
        log_keep = F.logsigmoid(keep_logits).masked_fill(~mask.unsqueeze(-1), 0.0)
        before = torch.cumsum(log_keep, dim=1) - log_keep  # P_i: sum over n < i
        scores = F.logsigmoid(set_logits) + before
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        ahead = scores.flip(1).cummax(dim=1).values.flip(1)  # max over m >= i; -inf on padding
        return (ahead - before).exp()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.out(self.flags(x, mask)) * mask.unsqueeze(-1)
