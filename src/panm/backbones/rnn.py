"""Recurrent encoders that ignore padding (packed sequences), so batching never changes a result."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """A (bidirectional) GRU or LSTM over the valid slots of each sequence.

    With `bidirectional`, each direction has width dim // 2 so that outputs keep width `dim`.
    With `reverse` (one direction only), it reads each sequence from its last valid slot to its
    first, so a slot's output summarises the slots from it to the end.
    forward: x (B, L, dim), mask (B, L) bool, right padding -> outputs (B, L, dim) (zeros on
    padding) and the final state (B, dim) (last layer; both directions concatenated; with
    `reverse`, the state after the first slot).
    """

    def __init__(
        self,
        cell: str,
        dim: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        reverse: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
        if reverse and bidirectional:
            raise ValueError("a bidirectional encoder already reads both ways; reverse needs one")
        if bidirectional and dim % 2:
            raise ValueError(f"a bidirectional encoder needs an even width, got {dim}")
        self.bidirectional, self.reverse = bidirectional, reverse
        self.rnn = CELLS[cell](
            dim,
            dim // 2 if bidirectional else dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        lengths = mask.sum(dim=1).cpu()
        if self.reverse:
            x = _flip_valid(x, mask)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        hidden = final[0] if isinstance(final, tuple) else final  # LSTM returns (h, c)
        if self.bidirectional:
            last = hidden[-2:].transpose(0, 1).flatten(1)
        else:
            last = hidden[-1]
        if self.reverse:
            outputs = _flip_valid(outputs, mask)
        return outputs, last


def _flip_valid(x: Tensor, mask: Tensor) -> Tensor:
    """x (B, L, D) with each row's valid slots (mask (B, L), right padding) in reverse order;
    padded slots stay where they are. Its own inverse."""
    lengths = mask.sum(dim=1, keepdim=True)
    slots = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    order = torch.where(slots < lengths, lengths - 1 - slots, slots)  # (B, L)
    return x.gather(1, order.unsqueeze(-1).expand_as(x))
