"""Recurrent encoders that ignore padding (packed sequences), so batching never changes a result."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """A (bidirectional) GRU or LSTM over the valid slots of each sequence.

    With `bidirectional`, each direction has width dim // 2 so that outputs keep width `dim`.
    forward: x (B, L, dim), mask (B, L) bool -> outputs (B, L, dim) (zeros on padding) and the
    final state (B, dim) (last layer; both directions concatenated).
    """

    def __init__(
        self,
        cell: str,
        dim: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
        if bidirectional and dim % 2:
            raise ValueError(f"a bidirectional encoder needs an even width, got {dim}")
        self.bidirectional = bidirectional
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
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        hidden = final[0] if isinstance(final, tuple) else final  # LSTM returns (h, c)
        if self.bidirectional:
            last = hidden[-2:].transpose(0, 1).flatten(1)
        else:
            last = hidden[-1]
        return outputs, last
