"""Mode-1 pointers that start where a content matches, instead of at an end of memory.

PANM's pointers start on the first or the last slot. An answer that walks two parts of the input
side by side (binary addition: the two numbers' digits, lowest first, around "+") needs one
pointer to start inside memory, at a place only the content can tell. `ContentStart` scores
every slot by the slot before it, against a learned query per pointer, and starts the pointer on
the best slot: the slot after a match, as an induction head finds it (binary addition: the
slot after "+", the second number's lowest digit).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ContentStart(nn.Module):
    """The start slots of `num_pointers` Mode-1 pointers, chosen by content.

    Slot i's key is a linear map of slot i - 1 (of zeros for the first valid slot: padded slots
    hold zeros); each pointer's learned query scores the keys by dot product, and the pointer
    starts on the valid slot with the best score (the first of equal ones). The choice is
    hard at any time; in training its weights carry the softmax's gradient (straight-through),
    so the query learns from what the start slot's reads do to the loss.
    """

    def __init__(self, num_pointers: int, memory_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(memory_dim, key_dim)
        self.query = nn.Parameter(torch.randn(num_pointers, key_dim) / math.sqrt(key_dim))

    def forward(self, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """memory: (B, L, D), zero on padded slots; mask: (B, L) bool, True on valid slots.

        Returns the start slots (B, K) long and their weights (B, K, L): one-hot on the start
        slot, plus in training the softmax over valid slots minus its detached value.
        """
        previous = nn.functional.pad(memory, (0, 0, 1, 0))[:, :-1]  # slot i holds slot i - 1
        scores = torch.einsum("bld,kd->bkl", self.key(previous), self.query)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        slots = scores.argmax(dim=-1)  # the first of equal scores
        weights = nn.functional.one_hot(slots, memory.shape[1]).to(memory.dtype)
        if self.training:
            soft = scores.softmax(dim=-1)
            weights = weights + soft - soft.detach()
        return slots, weights
