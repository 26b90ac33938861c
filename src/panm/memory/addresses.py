"""The address bank: fixed binary addresses for memory slots.

Slot i of a sequence with base address `a` has address `(a + i) mod 2**bits`, written as a 0/1
vector of `bits` entries, most significant bit first. In training the base is drawn uniformly per
sequence ("base-address sampling") so that every address, and every increment between
addresses, is seen on short sequences; in evaluation it is 0. Addresses are never learned.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def binary_table(bits: int) -> Tensor:
    """All 2**bits addresses as 0/1 rows, most significant bit first: (2**bits, bits) float."""
    values = torch.arange(2**bits).unsqueeze(1)
    shifts = torch.arange(bits - 1, -1, -1)
    return ((values >> shifts) & 1).float()


class AddressBank(nn.Module):
    """Holds the table of all addresses (built once) and looks up a window of it per sequence."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 1 <= bits <= 24:
            raise ValueError(f"address_bits must be in 1..24, got {bits}")
        self.bits = bits
        self.size = 2**bits
        self.register_buffer("table", binary_table(bits), persistent=False)

    def sample_base(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Base addresses drawn uniformly from [0, 2**bits): (B,) long."""
        return torch.randint(0, self.size, (batch_size,), device=device, generator=generator)

    def indices(self, base: Tensor, num_slots: int) -> Tensor:
        """Integer address of each slot: (B,) base -> (B, L) long, wrapping modulo 2**bits."""
        offsets = torch.arange(num_slots, device=base.device)
        return (base.unsqueeze(1) + offsets) % self.size

    def lookup(self, indices: Tensor) -> Tensor:
        """Binary vectors of integer addresses: (...) long -> (..., bits) float."""
        return self.table[indices]

    def forward(self, base: Tensor, num_slots: int) -> Tensor:
        """Addresses of `num_slots` consecutive slots from each base: (B,) -> (B, L, bits)."""
        return self.lookup(self.indices(base, num_slots))
