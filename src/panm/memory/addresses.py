"""The address bank: fixed binary addresses for memory slots.

Slot i of a sequence with base address `a` has address `(a + i) mod 2**bits`, written as a 0/1
vector of `bits` entries, most significant bit first. In training the base is drawn per sequence
("base-address sampling") so that every address, and every increment between addresses, is seen
on short sequences; in evaluation it is 0. Addresses are never learned.

Drawn uniformly, a window of n consecutive slots holds a carry into bit k (an increment that flips
the k lowest bits, e.g. 0111 -> 1000) with probability about n / 2**k, so the long carries that a
long test sequence must make are rare in training. The "carries" distribution puts one such
carry, of a length drawn uniformly from 0..bits, at a uniform position inside the window.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def binary_table(bits: int) -> Tensor:
    """All 2**bits addresses as 0/1 rows, most significant bit first: (2**bits, bits) float."""
    values = torch.arange(2**bits).unsqueeze(1)
    shifts = torch.arange(bits - 1, -1, -1)
    return ((values >> shifts) & 1).float()


BASE_DISTRIBUTIONS = ("uniform", "carries")


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
        self,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        distribution: str = "uniform",
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Base addresses in [0, 2**bits): (B,) long.

        "uniform": uniform draws. "carries": per sequence, a carry length k uniform in 0..bits
        and an offset j uniform in [0, length) (lengths: (B,) valid slots, default 1); slot j then
        holds a random multiple of 2**k, so the step from slot j - 1 to slot j carries into bit k.
        """
        if distribution not in BASE_DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {BASE_DISTRIBUTIONS}: {distribution!r}")

        def draw(high: int) -> Tensor:
            return torch.randint(0, high, (batch_size,), device=device, generator=generator)

        if distribution == "uniform":
            return draw(self.size)
        carry_bits = draw(self.bits + 1)
        multiple = (draw(self.size) >> carry_bits) << carry_bits
        if lengths is None:
            lengths = torch.ones(batch_size, dtype=torch.long, device=device)
        uniform = torch.rand(batch_size, device=device, generator=generator)
        offset = (uniform * lengths.clamp(min=1)).long()
        return (multiple - offset).remainder(self.size)

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
