"""The PANM mechanism, tested directly."""

import math

import pytest
import torch
from panm_reference import RECIPE as REFERENCE_RECIPE
from torch import nn

from panm import PANM, PANMConfig
from panm.memory.addresses import AddressBank, binary_table
from panm.memory.pointer_unit import GroupedGRUCell, PointerUnit
from panm.memory.relational import RelationalAccess


def make_panm(**overrides) -> PANM:
    defaults = dict(memory_dim=16, output_dim=7, hidden_dim=24, pointer_dim=12, key_dim=12)
    defaults.update(overrides)
    return PANM(PANMConfig(**defaults))


def random_memory(lengths, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    memory = torch.randn(len(lengths), max(lengths), dim, generator=generator)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return memory, mask


def test_binary_table_is_msb_first():
    table = binary_table(4)
    assert table.shape == (16, 4)
    assert table[0].tolist() == [0, 0, 0, 0]
    assert table[1].tolist() == [0, 0, 0, 1]
    assert table[6].tolist() == [0, 1, 1, 0]
    assert table[15].tolist() == [1, 1, 1, 1]
    weights = 2 ** torch.arange(3, -1, -1).float()
    assert torch.equal(table @ weights, torch.arange(16).float())


def test_addresses_wrap_modulo_address_space():
    bank = AddressBank(3)
    addresses = bank(torch.tensor([6]), 4)
    values = addresses[0] @ torch.tensor([4.0, 2.0, 1.0])
    assert values.tolist() == [6, 7, 0, 1]


def test_base_sampling_covers_the_whole_range():
    bank = AddressBank(4)
    bases = bank.sample_base(4000, torch.device("cpu"), torch.Generator().manual_seed(0))
    counts = torch.bincount(bases, minlength=16)
    assert counts.numel() == 16 and (counts > 150).all()


def test_carry_bases_put_a_carry_of_every_bit_inside_the_sequence():
    torch.manual_seed(0)
    bank = AddressBank(10)
    lengths = torch.randint(1, 41, (20_000,))
    bases = bank.sample_carry_base(lengths)
    assert 0 <= bases.min() and bases.max() < 1024
    slots = torch.arange(40)
    inside = (slots >= 1) & (slots < lengths.unsqueeze(1))  # slots a move can land on
    addresses = bank.indices(bases, 40)

    def carry_share(bits, rows):  # sequences with a move onto a multiple of 2**bits
        carries = (addresses[rows] % 2**bits == 0) & inside[rows]
        return carries.any(dim=1).float().mean().item()

    longer = lengths > 1
    assert carry_share(1, longer) == 1.0  # every move onto an even address is a carry
    for bits in range(1, 11):  # each bit is chosen in a tenth of the draws, whatever the length
        assert carry_share(bits, longer) > (11 - bits) / 10 - 0.03
    one_slot = lengths == 1
    assert ((bases[one_slot] + 1) % 2 == 0).all()  # the next address carries


def test_carry_bases_are_drawn_in_training_only_and_in_their_share():
    memory, mask = random_memory([6] * 2000)
    panm = make_panm(address_bits=10, carry_bases=1.0)
    bases = panm(memory, mask, num_steps=1).addresses[:, 0] @ 2 ** torch.arange(9, -1, -1.0)
    high = (bases.long() % 512) >= 512 - 5  # slots 1-5 cross a multiple of 512
    # bits 9 and 10 chosen in 2 of 10 draws, bit j < 9 in 1 of 10, at a multiple of 512 in 1 of
    # 2**(9 - j): 0.3 in all (uniform bases: 5 / 512)
    assert 0.25 < high.float().mean() < 0.35
    assert not panm.eval()(memory, mask, num_steps=1).addresses[:, 0].any()  # base 0
    with pytest.raises(ValueError, match="carry_bases"):
        PANMConfig(carry_bases=1.5)


def test_random_eval_bases_differ_per_sequence():
    panm = make_panm(eval_base="random").eval()
    memory, mask = random_memory([5] * 64)
    first = panm(memory, mask, num_steps=1).addresses[:, 0]  # (B, bits): each first slot
    assert len({tuple(row.tolist()) for row in first}) > 20


def test_hard_eval_pointers_commit_sharp_pointers_and_leave_diffuse_ones_soft():
    torch.manual_seed(0)
    panm = make_panm(address_bits=5, address_similarity="bitwise", eval_pointers="hard")
    memory, mask = random_memory([7, 4, 6])
    rows = torch.arange(3)[:, None, None]
    with torch.no_grad():
        panm.pointer_unit.attention.log_scale.fill_(3.0)  # sharp: every pointer commits
        train_weights = panm(memory, mask, num_steps=1).mode1_weights
        assert ((train_weights > 0.5) & (train_weights < 1)).any()  # training stays soft
        out = panm.eval()(memory, mask, num_steps=5)
        weights = out.mode1_weights  # (B, T, G, L)
        assert set(weights.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(weights.sum(-1), torch.ones_like(weights.sum(-1)))
        assert not weights.masked_select(~mask[:, None, None, :]).any()  # never a padded slot
        chosen = weights.argmax(-1)  # (B, T, G)
        assert torch.equal(out.pointers, out.addresses[rows, chosen])  # exact slot addresses
        panm.config.eval_pointers = "soft"  # the first choice is the soft argmax
        assert torch.equal(panm(memory, mask, num_steps=1).mode1_weights.argmax(-1), chosen[:, :1])

        panm.pointer_unit.attention.log_scale.fill_(-6.0)  # diffuse: nothing commits
        soft = panm(memory, mask, num_steps=5)
        panm.config.eval_pointers = "hard"
        hard = panm(memory, mask, num_steps=5)
    assert soft.mode1_weights.max() < 0.5
    assert torch.equal(hard.mode1_weights, soft.mode1_weights)
    assert torch.equal(hard.logits, soft.logits)

    with torch.no_grad():  # in between: pointer by pointer, the committed ones alone change
        panm.pointer_unit.attention.log_scale.fill_(1.5)
        hard_first = panm(memory, mask, num_steps=1).mode1_weights[:, 0]
        panm.config.eval_pointers = "soft"
        soft_first = panm(memory, mask, num_steps=1).mode1_weights[:, 0]  # (B, G, L)
    committed = soft_first.max(-1).values > 0.5
    assert committed.any() and not committed.all()
    one_hot = nn.functional.one_hot(soft_first.argmax(-1), soft_first.shape[-1]).float()
    torch.testing.assert_close(hard_first[committed], one_hot[committed])
    torch.testing.assert_close(hard_first[~committed], soft_first[~committed])


def test_training_samples_bases_and_evaluation_uses_zero():
    panm = make_panm(address_bits=5)
    memory, mask = random_memory([6, 6, 6, 6, 6, 6, 6, 6])
    torch.manual_seed(0)
    train_addresses = panm(memory, mask, num_steps=1).addresses
    first = train_addresses[:, 0] @ (2 ** torch.arange(4, -1, -1).float())
    assert len(set(first.tolist())) > 1
    panm.eval()
    eval_addresses = panm(memory, mask, num_steps=1).addresses
    assert torch.equal(eval_addresses[0], binary_table(5)[:6])
    assert torch.equal(eval_addresses, eval_addresses[:1].expand_as(eval_addresses))


def test_base_address_override():
    panm = make_panm(address_bits=4)
    memory, mask = random_memory([3, 3])
    out = panm(memory, mask, num_steps=1, base_address=torch.tensor([14, 2]))
    assert torch.equal(out.addresses[0], binary_table(4)[[14, 15, 0]])
    assert torch.equal(out.addresses[1], binary_table(4)[[2, 3, 4]])


@pytest.mark.parametrize("similarity", ["dot", "cosine", "bitwise"])
def test_pointer_is_weighted_sum_of_addresses(similarity):
    panm = make_panm(address_similarity=similarity, num_mode2=2).eval()
    memory, mask = random_memory([5, 3, 4])
    out = panm(memory, mask, num_steps=6, base_address=7)
    expected = torch.einsum("btgl,bla->btga", out.mode1_weights, out.addresses)
    torch.testing.assert_close(out.pointers, expected)
    expected2 = torch.einsum("btgl,bla->btga", out.mode2_weights, out.addresses)
    torch.testing.assert_close(out.mode2_pointers, expected2)
    torch.testing.assert_close(out.mode1_weights.sum(-1), torch.ones(3, 6, 2))


def test_output_shapes():
    panm = make_panm(num_mode1=3, num_mode2=2, address_bits=6)
    memory, mask = random_memory([9, 4])
    out = panm(memory, mask, num_steps=5)
    assert out.logits.shape == (2, 5, 7)
    assert out.pointers.shape == (2, 5, 3, 6)
    assert out.mode1_weights.shape == (2, 5, 3, 9)
    assert out.mode2_weights.shape == (2, 5, 2, 9)
    assert out.mode2_pointers.shape == (2, 5, 2, 6)
    assert out.addresses.shape == (2, 9, 6)
    assert out.controller_state.shape == (2, 24)


def test_initial_pointers_start_at_first_and_last_valid_slot():
    panm = make_panm(num_mode1=3, address_bits=4).eval()
    memory, mask = random_memory([5, 2])
    out = panm(memory, mask, num_steps=1, base_address=torch.tensor([3, 9]))
    start = panm.pointer_unit.start_offsets(mask.sum(1))
    assert start.tolist() == [[0, 4, 0], [0, 1, 0]]
    # The first step's pointer unit input is the start address: check through the GRU.
    table = binary_table(4)
    expected = torch.stack([table[(torch.tensor([3, 9]) + start[:, g]) % 16] for g in range(3)])
    state = panm.pointer_unit.cell(expected, torch.zeros(3, 2, 12))  # (G, B, S)
    scores = defined_scores(panm.pointer_unit.attention, state, out.addresses, mask)
    torch.testing.assert_close(scores.softmax(-1), out.mode1_weights[:, 0])


def defined_scores(attention, state, addresses, mask):
    """`AddressAttention`'s scores (B, G, L) from their definition (its docstring): state
    (G, B, S), addresses (B, L, bits), -inf where mask (B, L) is False."""
    query = attention.query(state).transpose(0, 1)  # (B, G, K)
    if attention.similarity == "bitwise":
        query, keys = torch.tanh(query), 2 * addresses - 1
    else:
        keys = attention.key_net(addresses)
    if attention.similarity == "cosine":
        query, keys = nn.functional.normalize(query, dim=-1), nn.functional.normalize(keys, dim=-1)
    scores = query.bmm(keys.transpose(1, 2)) * attention.log_scale.exp()
    return scores.masked_fill(~mask.unsqueeze(1), float("-inf"))


@pytest.mark.parametrize(
    "window, inputs", [(0, "recent"), (1, "recent"), (3, "recent"), (3, "latest")]
)
def test_pointer_walk_follows_its_definition(window, inputs):
    """Each step's weights, recomputed from the returned pointers: window 0 carries the GRU state
    over all steps; window K reruns it from zero over the last K pointers (or the latest, K
    times)."""
    unit = make_panm(pointer_window=window, pointer_inputs=inputs).eval().pointer_unit
    addresses = binary_table(8)[3:9].expand(2, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    start = torch.rand(2, 2, 8)
    with torch.no_grad():
        weights, pointers = unit.walk(start, addresses, mask, num_steps=5)
        history = [start, *pointers.unbind(1)]  # p_0 .. p_5
        history = [pointer.transpose(0, 1) for pointer in history]  # (G, B, bits) each
        state = torch.zeros(2, 2, 12)
        for t in range(5):
            if window == 0:
                state = unit.cell(history[t], state)
            else:
                recent = [history[t]] * window if inputs == "latest" else history[: t + 1][-window:]
                state = torch.zeros(2, 2, 12)
                for pointer in recent:
                    state = unit.cell(pointer, state)
            scores = defined_scores(unit.attention, state, addresses, mask)
            torch.testing.assert_close(weights[:, t], scores.softmax(-1))
            torch.testing.assert_close(pointers[:, t], weights[:, t].bmm(addresses))
    assert (weights[1, ..., 4:] == 0).all()


def restart_unit(move_to: int, prefer: int) -> PointerUnit:
    """A one-pointer unit with two restart slots whose move query asks for address move_to,
    whatever the state (zero weights, saturated biases), and whose restart prefers slot `prefer`
    of its two by 10 scales."""
    unit = PointerUnit(1, 6, 4, 4, "bitwise", window=1, inputs="latest", restart=2)
    with torch.no_grad():
        unit.attention.query.weight.zero_()
        unit.attention.query.bias.copy_(10 * (2 * binary_table(6)[move_to] - 1).unsqueeze(0))
        unit.attention.log_scale.fill_(math.log(10.0))  # a mismatched bit costs 20
        unit.restart_margin.zero_()  # a restart scores 10 below an exact move
        unit.restart_preference.copy_(torch.tensor([[0.0, 0.0]]))
        unit.restart_preference[0, prefer] = 10.0
    return unit


def test_restart_slots_are_the_start_and_the_slots_after_it_inward():
    unit = PointerUnit(2, 6, 4, 4, "bitwise", restart=2)
    offsets, valid = unit.restart_offsets(torch.tensor([1, 4]))
    assert offsets.tolist() == [[[0, 0], [0, 0]], [[0, 1], [3, 2]]]  # in range, if not valid
    assert valid.tolist() == [[[True, False], [True, False]], [[True, True], [True, True]]]


def test_pointer_restart_lands_where_a_move_leaves_the_memory():
    """A move to an address in memory lands there; a move to one that is not (past an end, or
    a padded slot) lands on the preferred restart slot, never on one that may not be landed on
    or on a padded slot; gradients reach the restart's margin and preference."""
    addresses = binary_table(6)[3:9].expand(2, 6, 6)  # slots hold addresses 3..8
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])  # row 1: addresses 3..6
    start = binary_table(6)[[3, 3]].unsqueeze(1)  # (B, G=1, bits): both start on slot 0
    slots = torch.tensor([[[0, 1]], [[0, 1]]])  # (B, G, K): the start slot and the next

    def walk(move_to, prefer, valid=None):
        valid = torch.ones(2, 1, 2, dtype=torch.bool) if valid is None else valid
        weights, _ = restart_unit(move_to, prefer).walk(
            start, addresses, mask, 2, False, (slots, valid)
        )
        return weights

    weights = walk(move_to=5, prefer=1)  # address 5 is slot 2 in both rows
    assert (weights[:, :, 0, 2] > 0.999).all()
    weights = walk(move_to=8, prefer=1)  # address 8: slot 5 of row 0, padded in row 1
    assert (weights[0, :, 0, 5] > 0.999).all() and (weights[1, :, 0, 1] > 0.999).all()
    assert (weights[1, ..., 4:] == 0).all()
    weights = walk(move_to=63, prefer=0)  # address 63 is two or more bits from every slot
    assert (weights[:, :, 0, 0] > 0.999).all()
    only_start = torch.tensor([True, False]).expand(2, 1, 2)
    weights = walk(move_to=63, prefer=1, valid=only_start)
    assert (weights[:, :, 0, 0] > 0.999).all() and (weights[..., 1] < 1e-6).all()
    with pytest.raises(ValueError, match="needs restart_slots"):
        restart_unit(5, 0).walk(start, addresses, mask, 2)
    with pytest.raises(ValueError, match="restart must be >= 0"):
        PointerUnit(1, 6, 4, 4, "bitwise", restart=-1)
    with pytest.raises(ValueError, match="needs the 'bitwise'"):
        PointerUnit(1, 6, 4, 4, "dot", restart=1)
    torch.manual_seed(0)
    unit = PointerUnit(1, 6, 4, 4, "bitwise", window=1, inputs="latest", restart=2)
    for valid in (torch.ones(2, 1, 2, dtype=torch.bool), only_start):
        unit.zero_grad()
        _, pointers = unit.walk(start, addresses, mask, 3, False, (slots, valid))
        pointers.sum().backward()
        assert unit.restart_margin.grad.abs().sum() > 0
        assert torch.isfinite(unit.attention.log_scale.grad)  # no inf * 0 from a blocked slot
    assert unit.restart_preference.grad is not None  # from the walk with two slots to choose


def test_hard_pointers_restart_exactly_when_the_asked_address_is_missing():
    """A move asking for address 12 (001100) while unsure of its bit worth 8: softly, the near
    miss 4 (000100) outscores the restart; a hard (evaluation) pointer restarts, as no slot has
    12. Asking for 5 (000101) with the same doubt, it lands on 5 either way."""
    addresses = binary_table(6)[3:9].expand(1, 6, 6)  # slots hold addresses 3..8
    mask = torch.ones(1, 6, dtype=torch.bool)
    start = binary_table(6)[[3]].unsqueeze(1)
    slots, valid = torch.tensor([[[0, 1]]]), torch.ones(1, 1, 2, dtype=torch.bool)
    for move_to, soft_slot, hard_slot in ((12, 1, 0), (5, 2, 2)):
        unit = restart_unit(move_to, prefer=0)
        with torch.no_grad():  # the bit worth 8 is the third of six (most significant first)
            unit.attention.query.bias[0, 2] = 0.1 if move_to & 8 else -0.1
        for hard, slot in ((False, soft_slot), (True, hard_slot)):
            weights, _ = unit.walk(start, addresses, mask, 1, hard, (slots, valid))
            assert weights[0, 0, 0].argmax() == slot and weights[0, 0, 0, slot] > 0.5
    unit = restart_unit(12, prefer=0)
    with torch.no_grad():  # a restart as good as the near miss: half the weight each
        unit.attention.query.bias[0, 2] = 0.1
        unit.restart_margin.fill_(math.log(math.tanh(0.1) / (1 - math.tanh(0.1))))
    soft, _ = unit.walk(start, addresses, mask, 1, False, (slots, valid))
    assert abs(soft[0, 0, 0, 0] - 0.5) < 0.01 and abs(soft[0, 0, 0, 1] - 0.5) < 0.01
    hard, _ = unit.walk(start, addresses, mask, 1, True, (slots, valid))
    assert hard[0, 0, 0, 0] == 1  # most weight on one slot and the restart: no slot has 12


def test_an_undecided_hard_pointer_stays_soft():
    """A pointer spread over several slots (the restart and its best slot hold at most half of
    its weight) is left as the soft walk leaves it (as `commit` leaves a pointer whose largest
    weight is at most one half), even when no slot has the address its query's signs ask for."""
    addresses = binary_table(6)[3:9].expand(1, 6, 6)
    mask = torch.ones(1, 6, dtype=torch.bool)
    start = binary_table(6)[[3]].unsqueeze(1)
    slots, valid = torch.tensor([[[0, 1]]]), torch.ones(1, 1, 2, dtype=torch.bool)
    unit = restart_unit(63, prefer=0)  # no slot holds 63
    with torch.no_grad():
        unit.attention.query.bias.mul_(0.001)  # every bit unsure
        unit.attention.log_scale.zero_()
    soft, _ = unit.walk(start, addresses, mask, 1, False, (slots, valid))
    hard, _ = unit.walk(start, addresses, mask, 1, True, (slots, valid))
    assert soft.max() < 0.5
    torch.testing.assert_close(hard, soft)


@pytest.mark.parametrize("decoys", [0, 4])
def test_padded_slots_get_exactly_zero_weight(decoys):
    panm = make_panm(num_mode2=1, decoy_slots=decoys)
    memory, mask = random_memory([6, 2, 4])
    memory[~mask] = float("nan")  # whatever an encoder leaves in padding must not leak
    out = panm(memory, mask, num_steps=4)
    padded = ~mask[:, None, None, :].expand_as(out.mode1_weights)
    assert (out.mode1_weights[padded] == 0).all()
    padded2 = ~mask[:, None, None, :].expand_as(out.mode2_weights)
    assert (out.mode2_weights[padded2] == 0).all()
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"eval_pointers": "hard", "decoy_slots": 4},
        {"pointer_window": 2, "controller_init": "memory_mean"},
        {"initial_read": True},
        {"output_initial_read": True, "decoy_slots": 4},
        {"output_previous_read": True, "eval_pointers": "hard"},
        {"mode2_exclusion": True},
        {
            "mode2_exclusion": True,
            "mode2_selection": "hard",
            "mode2_tie_margin": 0.5,
            "mode2_query": "constant",
        },
    ],
)
def test_batch_invariance(options):
    panm = make_panm(num_mode2=1, address_similarity="bitwise", **options).eval()
    lengths = [7, 3, 10, 1]
    memory, mask = random_memory(lengths)
    batched = panm(memory, mask, num_steps=8)
    for i, n in enumerate(lengths):
        alone = panm(memory[i : i + 1, :n], mask[i : i + 1, :n], num_steps=8)
        torch.testing.assert_close(alone.logits[0], batched.logits[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(alone.pointers[0], batched.pointers[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            alone.mode1_weights[0], batched.mode1_weights[i, :, :, :n], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            alone.mode2_weights[0], batched.mode2_weights[i, :, :, :n], atol=1e-5, rtol=0
        )


def test_pointer_feedback_does_not_mix_samples():
    """The authors' code reshaped (L, B, b) as (B, L, b), mixing samples' pointers.

    The Pointer Unit sees addresses only, so a sample's pointers are moved by changing what
    they depend on, its base address and its length: no other sample's pointers, weights or
    outputs may change."""
    panm = make_panm(num_mode2=1, address_bits=6).eval()
    memory, mask = random_memory([6, 6, 6])
    with torch.no_grad():
        reference = panm(memory, mask, num_steps=6, base_address=torch.tensor([5, 9, 40]))
        moved = panm(memory, mask, num_steps=6, base_address=torch.tensor([5, 33, 40]))
        mask[1, 3:] = False  # and shorter
        shorter = panm(memory, mask, num_steps=6, base_address=torch.tensor([5, 33, 40]))
    for changed in (moved, shorter):
        assert not torch.allclose(changed.pointers[1], reference.pointers[1])
        for field in ("logits", "pointers", "mode1_weights", "mode2_weights"):
            expected = getattr(reference, field)[[0, 2]]
            torch.testing.assert_close(getattr(changed, field)[[0, 2]], expected, rtol=0, atol=0)


def test_decoy_slots_only_in_training_and_outside_the_window():
    panm = make_panm(address_bits=5, decoy_slots=6)
    memory, mask = random_memory([4, 7, 2])
    base = torch.tensor([0, 30, 12])
    torch.manual_seed(0)
    first = torch.zeros(3, dtype=torch.long)
    slots, ids, slot_mask, _ = panm._with_decoys(memory, mask, base, first, mask.sum(1))
    assert slots.shape == (3, 13, 16) and ids.shape == (3, 13) and slot_mask.shape == (3, 13)
    for i, n in enumerate(mask.sum(1).tolist()):
        window = {(base[i].item() + j) % 32 for j in range(n)}
        for decoy, valid in zip(ids[i, 7:].tolist(), slot_mask[i, 7:].tolist(), strict=True):
            flipped_from_window = any(bin(decoy ^ w).count("1") == 1 for w in window)
            assert flipped_from_window
            assert valid == (decoy not in window)
    panm.eval()
    out = panm(memory, mask, num_steps=2)
    assert out.mode1_weights.shape[-1] == 7


def test_carry_decoy_sits_where_a_dropped_carry_points():
    panm = make_panm(address_bits=8, decoy_slots=2, carry_decoy=True)
    memory, mask = random_memory([10, 10, 10, 5, 1])
    base = torch.tensor([120, 60, 250, 0, 77])
    first = torch.zeros(5, dtype=torch.long)
    _, ids, slot_mask, _ = panm._with_decoys(memory, mask, base, first, mask.sum(1))
    # 127 -> 128 without its carry into bit 7 asks for 0, and 63 -> 64 for 0 (both outside);
    # 250..255, 0..3: the wrap onto 0 drops no bit, the largest carry inside is onto 252,
    # so 248; base 0, length 5: the carry onto 4 asks for 0, a real slot, so not a decoy.
    assert ids[:4, 10].tolist() == [0, 0, 248, 0]
    assert slot_mask[:3, 10].all() and not slot_mask[3, 10]
    # one slot: no move, so the decoy is an ordinary one (one bit from address 77)
    assert bin(ids[4, 10].item() ^ 77).count("1") == 1
    with pytest.raises(ValueError, match="carry_decoy needs decoy_slots"):
        PANMConfig(carry_decoy=True)


@pytest.mark.parametrize("controller_init", ["memory_sum", "memory_mean"])
def test_gradients_reach_every_parameter(controller_init):
    panm = make_panm(
        input_dim=5,
        controller_init=controller_init,
        address_similarity="cosine",
        mode2_exclusion=True,
    )
    memory, mask = random_memory([5, 3])
    memory.requires_grad_(True)
    out = panm(memory, mask, inputs=torch.randn(2, 4, 5))
    out.logits.square().sum().backward()
    for name, param in panm.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert memory.grad[mask].abs().sum() > 0
    assert (memory.grad[~mask] == 0).all()


def test_given_controller_state():
    panm = make_panm(controller_init="given").eval()
    memory, mask = random_memory([4, 4])
    a = panm(memory, mask, num_steps=3, controller_state=torch.zeros(2, 24))
    b = panm(memory, mask, num_steps=3, controller_state=torch.ones(2, 24))
    assert not torch.allclose(a.logits, b.logits)


def test_output_input_reaches_the_output_directly():
    """With output_input the output MLP sees the step's decoder input itself: a change of the
    input at the last step changes that step's logits even with the controller's input weights
    zeroed, so not through the controller; without it, it cannot."""
    with pytest.raises(ValueError, match="output_input needs a decoder input"):
        make_panm(output_input=True)
    memory, mask = random_memory([4, 3])
    inputs = torch.randn(2, 3, 5)
    changed = inputs.clone()
    changed[:, -1] += 1.0
    for output_input in (True, False):
        torch.manual_seed(0)
        panm = make_panm(input_dim=5, output_input=output_input).eval()
        with torch.no_grad():
            panm.controller.weight_ih_l0[:, :5] = 0.0
        a, b = (panm(memory, mask, inputs=x).logits for x in (inputs, changed))
        assert torch.equal(a[:, :-1], b[:, :-1])
        assert torch.equal(a[:, -1], b[:, -1]) != output_input


def test_same_seed_same_result():
    def run():
        torch.manual_seed(123)
        panm = make_panm(decoy_slots=3)
        memory, mask = random_memory([5, 8, 3])
        return panm(memory, mask, num_steps=4).logits

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


def test_save_load_round_trip(tmp_path):
    panm = make_panm(address_similarity="bitwise", num_mode1=3).eval()
    panm.save_pretrained(tmp_path)
    loaded = PANM.from_pretrained(tmp_path).eval()
    assert loaded.config == panm.config
    memory, mask = random_memory([5, 2])
    torch.testing.assert_close(
        loaded(memory, mask, num_steps=4).logits,
        panm(memory, mask, num_steps=4).logits,
        rtol=0,
        atol=0,
    )
    assert not list(tmp_path.glob("*.tmp"))


def test_grouped_gru_matches_torch_gru_cell():
    grouped = GroupedGRUCell(2, 3, 4)
    x, h = torch.randn(2, 5, 3), torch.randn(2, 5, 4)  # (G, B, .)
    out = grouped(x, h)
    for g in range(2):
        cell = torch.nn.GRUCell(3, 4)
        with torch.no_grad():
            cell.weight_ih.copy_(grouped.input_map.weight[g].T)
            cell.weight_hh.copy_(grouped.hidden_map.weight[g].T)
            cell.bias_ih.copy_(grouped.input_map.bias[g])
            cell.bias_hh.copy_(grouped.hidden_map.bias[g])
        torch.testing.assert_close(out[g], cell(x[g], h[g]))
    from_zero = grouped(x, None)  # the zero-state shortcut
    torch.testing.assert_close(from_zero, grouped(x, torch.zeros_like(h)))


def test_error_memory_longer_than_address_space():
    panm = make_panm(address_bits=4)
    memory, mask = random_memory([17])
    with pytest.raises(ValueError, match=r"17 slots.*address_bits=4.*address_bits >= 5"):
        panm(memory, mask, num_steps=1)


def test_error_mask_without_valid_slot():
    panm = make_panm()
    memory, mask = random_memory([3, 3])
    mask[1] = False
    with pytest.raises(ValueError, match=r"no valid slot in batch rows \[1\]"):
        panm(memory, mask, num_steps=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(memory=torch.randn(2, 3, 9)), r"memory must be \(batch, slots, 16\)"),
        (dict(memory_mask=torch.ones(2, 4, dtype=torch.bool)), "memory_mask must be"),
        (dict(memory_mask=torch.ones(2, 3)), "memory_mask must be a bool"),
        (dict(num_steps=None), "exactly one of num_steps and inputs"),
        (dict(inputs=torch.randn(2, 3, 5)), "input_dim=0"),
        (dict(num_steps=0), "must be >= 1"),
        (dict(controller_state=torch.zeros(2, 24)), "controller_state was given"),
    ],
)
def test_shape_errors(kwargs, message):
    panm = make_panm()
    args = dict(memory=torch.randn(2, 3, 16), memory_mask=torch.ones(2, 3, dtype=torch.bool))
    args["num_steps"] = 2
    args.update(kwargs)
    if "inputs" in kwargs:
        args["num_steps"] = None
    with pytest.raises(ValueError, match=message):
        panm(**args)


@pytest.mark.parametrize(
    "field, value",
    [
        ("address_similarity", "euclid"),
        ("controller_init", "zeros"),
        ("num_mode1", 0),
        ("pointer_window", -1),
        ("pointer_inputs", "oldest"),
        ("pointer_inputs", "latest"),
        ("eval_base", "often"),
        ("eval_pointers", "sharp"),
        ("mode2_exclusion", True),
        ("mode2_query", "controller"),
        ("mode2_selection", "sharp"),
        ("mode2_tie_margin", 1.0),
        ("mode2_tie_margin", -1.0),
        ("pointer_restart", 1),
        ("pointer_restart", -1),
    ],
)
def test_config_errors(field, value):
    extra = {}
    if field == "mode2_exclusion":
        extra = {"num_mode2": 0}
    if field == "mode2_tie_margin" and value < 0:
        extra = {"mode2_selection": "hard"}
    with pytest.raises(ValueError, match=field):
        PANMConfig(**{field: value}, **extra)


def test_initial_read_primes_the_controller_with_the_start_slots():
    panm = make_panm(initial_read=True).eval()
    memory, mask = random_memory([4, 3])
    calls = []
    panm.controller.register_forward_hook(lambda module, args, out: calls.append(args[0]))
    panm(memory, mask, num_steps=2)
    step0, steps = calls  # (B, 1, input) the step-0 read, then (B, T, input) one per step
    assert step0.shape[1] == 1 and steps.shape[1] == 2
    expected = torch.cat([memory[[0, 1], [0, 0]], memory[[0, 1], [3, 2]]], dim=-1)
    torch.testing.assert_close(step0[:, 0], expected)


def test_mode2_exclusion_reads_each_slot_once_in_score_order():
    access = RelationalAccess(memory_dim=3, num_mode1=1, num_heads=1, key_dim=1, exclusion=True)
    with torch.no_grad():
        access.query.weight.zero_()
        access.query.bias.fill_(1.0)  # a constant query: the score of a slot is its key
        access.exclusion_scale.fill_(1000.0)
    keys = 50.0 * torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0, 9.0]]).unsqueeze(-1)  # (1, 6, 1)
    mask = torch.tensor([[True, True, True, True, True, False]])  # the 9 is padding
    weights = access(torch.zeros(1, 6, 1, 3), keys, mask)  # (1, T=6, H=1, 6)
    assert weights[0, :5, 0].argmax(-1).tolist() == [0, 2, 4, 3, 1]
    assert (weights[..., 5] == 0).all()  # padding is never read, even once all slots were
    torch.testing.assert_close(weights[0, :5, 0].sum(0)[:5], torch.ones(5), atol=1e-4, rtol=0)
    plain = RelationalAccess(memory_dim=3, num_mode1=1, num_heads=1, key_dim=1)
    plain.load_state_dict({k: v for k, v in access.state_dict().items() if "exclusion" not in k})
    again = plain(torch.zeros(1, 6, 1, 3), keys, mask)
    assert (again[0, :, 0].argmax(-1) == 0).all()  # without exclusion every step reads the top


def constant_query_access(**options) -> RelationalAccess:
    """A Mode-2 head whose score of a slot is minus its key (1-dimensional keys)."""
    access = RelationalAccess(
        memory_dim=1, num_mode1=1, num_heads=1, key_dim=1, constant_query=True, **options
    )
    with torch.no_grad():
        access.query.fill_(-1.0)
    return access


def test_hard_mode2_exclusion_is_a_selection_sort_that_starts_over():
    access = constant_query_access(exclusion=True, hard=True)
    keys = torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0, -9.0]]).unsqueeze(-1)  # (1, 6, 1)
    mask = torch.tensor([[True, True, True, True, True, False]])  # the -9 is padding
    weights = access(torch.zeros(1, 7, 1, 1), keys, mask)[0, :, 0]  # (T=7, 6)
    assert set(weights.flatten().tolist()) == {0.0, 1.0}  # one slot per step, exactly
    assert weights.argmax(-1).tolist() == [1, 3, 4, 2, 0, 1, 3]  # all five read: start over
    assert (weights[:, 5] == 0).all()


def test_hard_mode2_tie_margin_reads_equal_keys_in_input_order():
    keys = torch.tensor([[3.1, 1.2, 2.0, 1.0, 3.0]]).unsqueeze(-1)
    mask = torch.ones(1, 5, dtype=torch.bool)
    reads = torch.zeros(1, 5, 1, 1)
    stable = constant_query_access(exclusion=True, hard=True, tie_margin=0.5)
    exact = constant_query_access(exclusion=True, hard=True)
    assert stable(reads, keys, mask)[0, :, 0].argmax(-1).tolist() == [1, 3, 2, 0, 4]
    assert exact(reads, keys, mask)[0, :, 0].argmax(-1).tolist() == [3, 1, 2, 4, 0]


def test_hard_mode2_gradient_is_the_softmax_gradient():
    keys = torch.tensor([[0.5, -1.0, 2.0]]).unsqueeze(-1)
    mask = torch.ones(1, 3, dtype=torch.bool)
    upstream = torch.randn(1, 1, 1, 3)
    grads = []
    for hard in (True, False):
        access = constant_query_access(hard=hard)
        (access(torch.zeros(1, 1, 1, 1), keys, mask) * upstream).sum().backward()
        grads.append(access.query.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("mode2_decoys", [True, False])
def test_mode2_decoys_switch(mode2_decoys):
    panm = make_panm(decoy_slots=6, num_mode2=1, mode2_decoys=mode2_decoys).train()
    memory, mask = random_memory([4, 7, 2])
    torch.manual_seed(0)
    out = panm(memory, mask, num_steps=3)
    on_real_slots = out.mode2_weights.sum(-1)  # mode2_weights cover the real slots only
    if mode2_decoys:
        assert (on_real_slots < 1 - 1e-3).any()
    else:
        torch.testing.assert_close(on_real_slots, torch.ones_like(on_real_slots))


RECIPE = {**REFERENCE_RECIPE, "decoy_slots": 8}  # panm.recipes.PANM_EXTRAPOLATING
SORT_RECIPE = dict(  # with panm.recipes.SORT_BY_CONTENT and priority sort's tie margin
    **RECIPE,
    mode2_query="constant",
    mode2_selection="hard",
    mode2_exclusion=True,
    mode2_decoys=False,
    mode2_tie_margin=1.0,
)
PREVIOUS_SLOT_KEYS = dict(  # a Mode-2 head that finds the slot after the first occurrence
    **RECIPE, mode2_keys="previous_slot", mode2_selection="hard", mode2_decoys=False
)


def padded(sequences: list[torch.Tensor], sides: list[str], width: int):
    """Sequences (n_i, D) in a (B, width, D) batch: each row padded on its side ("right",
    "left" or "both"), with NaN in the padding. Returns memory, mask."""
    memory = torch.full((len(sequences), width, sequences[0].shape[1]), float("nan"))
    mask = torch.zeros(len(sequences), width, dtype=torch.bool)
    for i, (sequence, side) in enumerate(zip(sequences, sides, strict=True)):
        n = len(sequence)
        first = {"right": 0, "left": width - n, "both": (width - n) // 2}[side]
        memory[i, first : first + n] = sequence
        mask[i, first : first + n] = True
    return memory, mask


def valid_part(out, i: int, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sample i's outputs on its valid slots."""
    valid = mask[i]
    return {
        "logits": out.logits[i],
        "pointers": out.pointers[i],
        "mode2_pointers": out.mode2_pointers[i],
        "mode1_weights": out.mode1_weights[i][..., valid],
        "mode2_weights": out.mode2_weights[i][..., valid],
        "addresses": out.addresses[i][valid],
        "controller_state": out.controller_state[i],
    }


@pytest.mark.parametrize(
    "options",
    [
        {},
        RECIPE,
        SORT_RECIPE,
        {**RECIPE, "input_dim": 5, "num_mode1": 3, "num_mode2": 2},
        {**RECIPE, "initial_read": False, "output_initial_read": True, "num_mode1": 3},
        PREVIOUS_SLOT_KEYS,
    ],
    ids=["paper", "recipe", "sort-recipe", "inputs", "output-initial-read", "previous-slot"],
)
def test_left_and_right_padding_equal_the_unpadded_run(options):
    panm = make_panm(**{"address_bits": 5, "num_mode2": 1, **options}).eval()
    generator = torch.Generator().manual_seed(1)
    lengths = [5, 2, 7, 9]
    sequences = [torch.randn(n, 16, generator=generator) for n in lengths]
    inputs = torch.randn(4, 6, 5, generator=generator) if options.get("input_dim") else None
    steps = dict(inputs=inputs) if inputs is not None else dict(num_steps=6)
    base = torch.tensor([0, 7, 30, 12])
    with torch.no_grad():
        alone = [
            panm(
                sequence[None],
                torch.ones(1, len(sequence), dtype=torch.bool),
                base_address=base[i : i + 1],
                **(dict(inputs=inputs[i : i + 1]) if inputs is not None else steps),
            )
            for i, sequence in enumerate(sequences)
        ]
        for sides in (["right"] * 4, ["left"] * 4, ["left", "right", "both", "left"]):
            memory, mask = padded(sequences, sides, width=11)
            out = panm(memory, mask, base_address=base, **steps)
            assert torch.isfinite(out.logits).all()
            assert (out.mode1_weights.masked_select(~mask[:, None, None, :]) == 0).all()
            assert (out.mode2_weights.masked_select(~mask[:, None, None, :]) == 0).all()
            for i in range(4):
                expected = valid_part(alone[i], 0, torch.ones(1, lengths[i], dtype=torch.bool))
                for name, value in valid_part(out, i, mask).items():
                    torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=0, msg=name)
    # a left-padded row's first valid slot has the base address and the next ones count up
    assert torch.equal(out.addresses[3, 2:], binary_table(5)[12:21])


@pytest.mark.parametrize(
    "options",
    [RECIPE, SORT_RECIPE, {**RECIPE, "output_initial_read": True}, PREVIOUS_SLOT_KEYS],
    ids=["recipe", "sort-recipe", "output-initial-read", "previous-slot"],
)
def test_padding_side_does_not_change_training_with_decoys(options):
    """Training draws (bases, decoys) are per valid slot, so the side of the padding does not
    change them: the same seed gives the same result and the same gradients."""
    panm = make_panm(address_bits=5, **options).train()
    generator = torch.Generator().manual_seed(2)
    sequences = [torch.randn(n, 16, generator=generator) for n in [5, 2, 7]]
    results, gradients = [], []
    for sides in (["right"] * 3, ["left"] * 3, ["both", "left", "right"]):
        memory, mask = padded(sequences, sides, width=9)
        memory.requires_grad_(True)
        torch.manual_seed(0)
        out = panm(memory, mask, num_steps=6)
        results.append([valid_part(out, i, mask) for i in range(3)])
        panm.zero_grad()
        out.logits.square().sum().backward()
        assert (memory.grad[~mask] == 0).all()
        gradients.append(
            [memory.grad[i, mask[i]] for i in range(3)]
            + [p.grad.clone() for p in panm.parameters()]
        )
    for other, other_gradients in zip(results[1:], gradients[1:], strict=True):
        for i in range(3):
            for name, value in other[i].items():
                torch.testing.assert_close(value, results[0][i][name], atol=1e-5, rtol=0)
        for gradient, expected in zip(other_gradients, gradients[0], strict=True):
            torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-4)


def test_left_padded_start_pointers_are_on_the_first_and_last_valid_slot():
    panm = make_panm(address_bits=4, initial_read=True).eval()
    memory, mask = padded([torch.randn(5, 16)], ["left"], width=7)  # [F, F, T, T, T, T, T]
    calls = []
    panm.controller.register_forward_hook(lambda module, args, out: calls.append(args[0]))
    out = panm(memory, mask, num_steps=1, base_address=3)
    assert torch.equal(out.addresses[0, 2:], binary_table(4)[3:8])
    step0 = calls[0][0, 0]  # the reads of the initial pointers: slots 2 and 6
    torch.testing.assert_close(step0, torch.cat([memory[0, 2], memory[0, 6]]))


@pytest.mark.parametrize(
    "row, message",
    [
        ([True, False, True, True], r"rows \[1\] have a hole"),
        ([False, True, False, True], r"rows \[1\] have a hole"),
        ([False, False, False, False], r"no valid slot in batch rows \[1\]"),
    ],
)
def test_masks_with_holes_are_rejected(row, message):
    panm = make_panm()
    mask = torch.tensor([[True, True, True, False], row])
    with pytest.raises(ValueError, match=message):
        panm(torch.randn(2, 4, 16), mask, num_steps=1)


def test_wide_addresses_are_computed_from_their_indices():
    panm = make_panm(address_bits=40).eval()
    assert sum(b.numel() for b in panm.buffers()) < 100  # no table of 2**40 addresses
    memory, mask = random_memory([4, 2])
    out = panm(memory, mask, num_steps=3, base_address=2**40 - 2)
    values = (out.addresses.long() << torch.arange(39, -1, -1)).sum(-1)
    assert values[0].tolist() == [2**40 - 2, 2**40 - 1, 0, 1]
    assert torch.isfinite(out.logits).all()
    assert make_panm(address_bits=62).address_bank.size == 2**62
    with pytest.raises(ValueError, match=r"address_bits must be in 1\.\.62, got 63"):
        PANMConfig(address_bits=63)
    with pytest.raises(ValueError, match=r"address_bits must be in 1\.\.62, got 0"):
        PANMConfig(address_bits=0)


@pytest.mark.parametrize("keys", ["previous_slot", "slot"])
def test_previous_slot_keys_find_the_slot_after_the_first_occurrence(keys):
    """With mode2_keys="previous_slot" a slot's key is its predecessor's: slots that follow equal
    contents score equally (to float rounding, which the small tie margin absorbs), and hard
    selection reads the first of them, for any weights. Plain keys ("slot") do not."""
    generator = torch.Generator().manual_seed(4)
    vocabulary = torch.randn(3, 16, generator=generator)  # few contents: many repeats
    misses = 0
    for seed in range(4):
        torch.manual_seed(seed)
        options = {**PREVIOUS_SLOT_KEYS, "mode2_keys": keys, "mode2_tie_margin": 1e-3}
        panm = make_panm(address_bits=6, num_mode2=1, **options).eval()
        tokens = torch.randint(0, 3, (8, 20), generator=generator)
        memory, mask = vocabulary[tokens], torch.ones(8, 20, dtype=torch.bool)
        with torch.no_grad():
            chosen = panm(memory, mask, num_steps=3).mode2_weights[:, :, 0].argmax(-1)  # (B, T)
        for row, slots in zip(tokens, chosen, strict=True):
            for j in slots.tolist():  # the predecessor of slot j must not occur before it
                misses += j > 0 and bool((row[: j - 1] == row[j - 1]).any())
    assert (misses == 0) == (keys == "previous_slot")


def test_previous_slot_keys_need_mode2_without_decoys():
    with pytest.raises(ValueError, match="needs mode2_decoys=False"):
        PANMConfig(mode2_keys="previous_slot", decoy_slots=8)
    PANMConfig(mode2_keys="previous_slot", decoy_slots=0)  # no decoys: nothing to key
