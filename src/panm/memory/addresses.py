"""The address bank: fixed binary addresses for memory slots.

Slot i of a sequence with base address `a` has address `(a + i) mod 2**bits`, written as a 0/1
vector of `bits` entries, most significant bit first. In training the base is drawn uniformly per
sequence ("base-address sampling") so that every address, and every increment between addresses,
is seen on short sequences; in evaluation it is 0. Addresses are never learned.

A uniform base makes a carry into bit j (the move onto a multiple of 2**j) happen in about L / 2**j
of the sequences of length L: rarer by half for each bit, so that a model trained on short
sequences meets the carries into high bits, which long sequences cannot avoid, least.
`sample_carry_base` places a sequence across a carry of a uniformly chosen bit instead.

Binary vectors are computed from the integer addresses when needed (a shift and a mask per bit),
so no table of all 2**bits addresses is ever built and `bits` may be as large as `MAX_BITS`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MAX_BITS = 62
"""The largest address width: integer addresses and their sums stay within int64."""


def to_binary(indices: Tensor, bits: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Integer addresses as 0/1 vectors, most significant bit first: (...) long -> (..., bits)."""
    shifts = torch.arange(bits - 1, -1, -1, device=indices.device)
    return ((indices.unsqueeze(-1) >> shifts) & 1).to(dtype)


def binary_table(bits: int) -> Tensor:
    """All 2**bits addresses as 0/1 rows, most significant bit first: (2**bits, bits) float."""
    return to_binary(torch.arange(2**bits), bits)


class AddressBank(nn.Module):
    """Addresses of windows of consecutive slots, one window per sequence."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"address_bits must be in 1..{MAX_BITS}, got {bits}")
        self.bits = bits
        self.size = 2**bits

    def sample_base(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Base addresses drawn uniformly from [0, 2**bits): (B,) long."""
        return torch.randint(0, self.size, (batch_size,), device=device, generator=generator)

    def sample_carry_base(self, lengths: Tensor, wrap: bool = True) -> Tensor:
        """Bases (B,) long that put a carry inside each sequence: for lengths (B,) long, slot c
        (uniform in 1..length-1; 1 for a sequence of one slot, whose next address is then the
        carry) gets a random multiple of 2**j, j uniform in 1..bits (j = bits: address 0, after
        the wrap-around), so the move from slot c - 1 to slot c flips the j lowest bits.
        wrap=False: j in 1..bits-1 and a multiple that keeps the sequence and the address after
        it from wrapping around (for sequences of at most half the address space)."""
        batch, device = lengths.shape[0], lengths.device
        level = torch.randint(1, self.bits + wrap, (batch,), device=device)
        uniform = torch.rand(batch, device=device, dtype=torch.float64)
        offset = (uniform * (lengths - 1)).long()  # float rounding must not reach length - 1
        crossing = 1 + torch.minimum(offset, (lengths - 2).clamp(min=0))
        step = 1 << level
        if wrap:  # any multiple of 2**j
            low, high = torch.zeros_like(level), (self.size >> level) - 1
        else:  # multiples m with m - c >= 0 and m + (length - c) <= size - 1
            low = (crossing + step - 1) >> level
            high = torch.maximum((self.size - 1 - lengths + crossing) >> level, low)
        uniform = torch.rand(batch, device=device, dtype=torch.float64)
        multiple = (low + (uniform * (high - low + 1)).long().clamp(max=high - low)) << level
        return (multiple - crossing) % self.size

    def indices(self, base: Tensor, num_slots: int) -> Tensor:
        """Integer address of each slot: (B,) base -> (B, L) long, wrapping modulo 2**bits."""
        offsets = torch.arange(num_slots, device=base.device)
        return (base.unsqueeze(1) + offsets) % self.size

    def lookup(self, indices: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Binary vectors of integer addresses: (...) long -> (..., bits) of `dtype`."""
        return to_binary(indices, self.bits, dtype)

    def forward(self, base: Tensor, num_slots: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Addresses of `num_slots` consecutive slots from each base: (B,) -> (B, L, bits)."""
        return self.lookup(self.indices(base, num_slots), dtype)
