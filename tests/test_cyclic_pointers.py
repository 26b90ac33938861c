"""`PANMConfig.cyclic_pointers`: the valid slots form a ring for the Mode-1 pointers.

Each valid slot also answers to its address plus and minus the row's length n, so a pointer
aimed one past the last slot lands on the first, and one aimed before the first on the last,
whatever the padding; decoys keep out of the ring's addresses; too few address bits for 3n
addresses is a clear error. (Padding, batch-invariance, gradients and save/load with the option
on are in tests/test_panm_properties.py.)
"""

import pytest
import torch

from panm import PANM, PANMConfig
from panm.memory.addresses import to_binary

BITS = 6


def aimed_panm(target: int, cyclic: bool) -> PANM:
    """A PANM whose Mode-1 pointers aim at address `target` at every step, whatever their
    state: the bitwise query's weights are zero and its bias spells the target's bits."""
    torch.manual_seed(0)
    panm = PANM(
        PANMConfig(
            memory_dim=4,
            output_dim=3,
            hidden_dim=8,
            pointer_dim=4,
            address_bits=BITS,
            num_mode1=1,
            num_mode2=0,
            address_similarity="bitwise",
            cyclic_pointers=cyclic,
        )
    ).eval()
    query = panm.pointer_unit.attention.query
    with torch.no_grad():
        query.weight.zero_()
        query.bias.copy_(20 * (2 * to_binary(torch.tensor([target]), BITS) - 1))
        panm.pointer_unit.attention.log_scale.fill_(2.0)
    return panm


def mask_of(width: int, length: int, left: bool) -> torch.Tensor:
    positions = torch.arange(width)
    return (positions >= width - length if left else positions < length).unsqueeze(0)


@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize(("offset", "slot"), [(5, 0), (-1, 4), (7, 2), (-3, 2), (2, 2)])
def test_a_pointer_aimed_past_either_end_lands_on_the_ring(left, offset, slot):
    base, length, width = 9, 5, 8
    mask = mask_of(width, length, left)
    first = width - length if left else 0
    out = aimed_panm(base + offset, cyclic=True)(
        torch.randn(1, width, 4), mask, num_steps=2, base_address=base
    )
    weights = out.mode1_weights[0, :, 0]  # (T, L)
    assert torch.allclose(weights[:, first + slot], torch.ones(2), atol=1e-4)
    assert (weights[:, ~mask[0]] == 0).all()
    # the pointer's value is the slot's own address, inside the sequence
    own = to_binary(torch.tensor(base + slot), BITS)
    assert torch.allclose(out.pointers[0, :, 0], own.expand(2, BITS), atol=1e-4)


def test_without_the_ring_a_pointer_aimed_past_the_end_reaches_no_slot_fully():
    base, length = 9, 5
    out = aimed_panm(base + length, cyclic=False)(
        torch.randn(1, length, 4), mask_of(length, length, False), num_steps=1, base_address=base
    )
    assert out.mode1_weights[0, 0, 0].max() < 0.5


def test_decoys_keep_out_of_the_ring():
    torch.manual_seed(0)
    config = PANMConfig(address_bits=BITS, decoy_slots=200, cyclic_pointers=True)
    panm = PANM(config)
    lengths = torch.tensor([5, 12, 3])
    width = 12
    mask = torch.arange(width) < lengths.unsqueeze(1)
    memory = torch.randn(3, width, config.memory_dim)
    base = torch.tensor([60, 0, 33])
    first = torch.zeros(3, dtype=torch.long)
    _, ids, decoy_mask, _ = panm._with_decoys(memory, mask, base, first, lengths)
    decoys, allowed = ids[:, width:], decoy_mask[:, width:]
    ring = (decoys - base.unsqueeze(1) + lengths.unsqueeze(1)) % 2**BITS < 3 * lengths.unsqueeze(1)
    assert allowed.any(dim=1).all()
    assert not (allowed & ring).any()


def test_too_few_address_bits_for_the_ring_is_a_clear_error():
    panm = PANM(PANMConfig(memory_dim=4, address_bits=5, cyclic_pointers=True))
    mask = torch.ones(1, 11, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"3 per slot with cyclic_pointers.*address_bits >= 6"):
        panm(torch.randn(1, 11, 4), mask, num_steps=1)
    assert panm(torch.randn(1, 10, 4), mask[:, :10], num_steps=1).logits.isfinite().all()
