"""`PANMConfig.output_initial_read`: the output MLP also takes the slots under the initial
Mode-1 pointers at every step.

The factored/dense equality, cached decoding, padding sides, batch invariance and the
property-based contract are checked with the option on in test_factored_reads.py,
test_cached_decoding.py, test_panm.py and test_panm_properties.py; this file checks the
parameter layout and that the path is live; that the option off computes what the code before
it computed is test_reference.py's (values stored at commit f28e6d4, before the option).
"""

import pytest
import torch
from panm_reference import RECIPE  # the extrapolating recipe's PANM settings, 3 decoys

from panm import PANM, PANMConfig

SMALL = dict(memory_dim=6, output_dim=5, hidden_dim=8, pointer_dim=6, key_dim=6, address_bits=5)
CASES = {  # name: (options, training, token memory)
    "paper, eval": ({}, False, False),
    "recipe, training": (RECIPE, True, False),
    "recipe, token memory, training": (RECIPE, True, True),
    "recipe, token memory, eval": (RECIPE, False, True),
    "inputs, 3 Mode-1, 2 Mode-2": (dict(input_dim=3, num_mode1=3, num_mode2=2), False, False),
}
VOCAB, STEPS = 9, 4


def batch(tokens: bool, input_dim: int = 0):
    """A batch of 3 rows, right, left and both-sided padded: memory (3, 7, 6), mask (3, 7),
    memory_tokens (rows (3, 7, 2), table (9, 6)) or None, inputs (3, 4, input_dim) or None."""
    generator = torch.Generator().manual_seed(5)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0, 0]])
    mask = mask.bool()
    table = torch.randn(VOCAB, 6, generator=generator, dtype=torch.float64)
    rows = torch.randint(0, VOCAB, (3, 7, 2), generator=generator)
    memory = table[rows].sum(2) if tokens else torch.randn(3, 7, 6, generator=generator)
    memory = memory.double()
    inputs = None
    if input_dim:
        inputs = torch.randn(3, STEPS, input_dim, generator=generator, dtype=torch.float64)
    return memory, mask, (rows, table) if tokens else None, inputs


def run(panm: PANM, memory, mask, memory_tokens, inputs, seed: int = 1):
    torch.manual_seed(seed)  # the same base addresses and decoys in training
    steps = dict(inputs=inputs) if inputs is not None else dict(num_steps=STEPS)
    return panm(memory, mask, memory_tokens=memory_tokens, **steps)


def build(seed: int = 0, **options) -> PANM:
    torch.manual_seed(seed)
    return PANM(PANMConfig(**SMALL, **options)).double()


def with_columns_zeroed(panm: PANM) -> PANM:
    """panm with its output MLP's first layer zero on all but the initial read's columns."""
    c = panm.config
    with torch.no_grad():
        panm.output_head[0].weight[:, : -c.num_mode1 * c.memory_dim] = 0
    return panm


@pytest.mark.parametrize("name", list(CASES))
def test_only_the_output_mlps_first_layer_grows(name):
    """On: the same parameters but G * D more input columns at the end of the output MLP's
    first layer; with those columns zero, the outputs of the option off."""
    options, training, tokens = CASES[name]
    on = build(**options, output_initial_read=True).train(training)
    off = build(**options).train(training)
    g, d = on.config.num_mode1, on.config.memory_dim
    state, off_state = on.state_dict(), off.state_dict()
    assert list(state) == list(off_state)
    for key, value in state.items():
        grown = off_state[key].shape
        if key == "output_head.0.weight":
            grown = (grown[0], grown[1] + g * d)
        assert value.shape == grown, key
    with torch.no_grad():
        state["output_head.0.weight"][:, -g * d :] = 0
        off.load_state_dict(
            {**state, "output_head.0.weight": state["output_head.0.weight"][:, : -g * d]}
        )
    inputs = batch(tokens, options.get("input_dim", 0))
    out, off_out = run(on, *inputs), run(off, *inputs)
    assert out.logits.shape == (3, STEPS, 5)
    for field in ("logits", "pointers", "mode1_weights", "mode2_weights", "controller_state"):
        torch.testing.assert_close(getattr(out, field), getattr(off_out, field), msg=field)


@pytest.mark.parametrize("tokens", [False, True], ids=["memory", "token memory"])
def test_the_output_reads_the_start_slots_at_every_step(tokens):
    """Without initial_read and with a given controller start, the controller never sees the
    start slots before step 1; an output MLP that only sees the initial read (every other
    column zero) changes at every step when a slot under an initial pointer changes, and not
    when another slot does."""
    panm = build(output_initial_read=True, controller_init="given", initial_read=False).eval()
    panm = with_columns_zeroed(panm)
    memory, mask, memory_tokens, _ = batch(tokens)
    state = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def logits(row: int, slot: int) -> torch.Tensor:
        """The logits with slot `slot` of batch row `row` changed."""
        changed, changed_tokens = memory.clone(), memory_tokens
        if tokens:
            rows, table = memory_tokens
            rows = rows.clone()
            rows[row, slot] = (rows[row, slot] + 1) % VOCAB
            changed, changed_tokens = table[rows].sum(2), (rows, table)
        else:
            changed[row, slot] += 1.0
        return panm(
            changed, mask, num_steps=STEPS, controller_state=state, memory_tokens=changed_tokens
        ).logits.detach()

    same = logits(0, 2)  # the middle slot of row 0 (valid slots 0..4)
    for row, first, last in ((0, 0, 4), (1, 3, 6), (2, 1, 3)):
        for start in (first, last):  # pointer 0 starts on the first valid slot, 1 on the last
            changed = logits(row, start)
            assert (changed[row] - same[row]).abs().amax(-1).gt(1e-6).all(), (row, start)
            others = [i for i in range(3) if i != row]
            torch.testing.assert_close(changed[others], same[others], rtol=0, atol=0)
    torch.testing.assert_close(logits(1, 4), same, rtol=0, atol=0)  # another middle slot


@pytest.mark.parametrize("tokens", [False, True], ids=["memory", "token memory"])
def test_the_gradient_reaches_the_new_columns(tokens):
    panm = build(**{**RECIPE, "initial_read": False}, output_initial_read=True).train()
    memory, mask, memory_tokens, _ = batch(tokens)
    run(panm, memory, mask, memory_tokens, None).logits.square().sum().backward()
    g, d = panm.config.num_mode1, panm.config.memory_dim
    grad = panm.output_head[0].weight.grad
    assert grad is not None
    assert (grad[:, -g * d :].abs().sum(0) > 0).all()  # every new column


@pytest.mark.parametrize("option", ["output_initial_read", "output_previous_read"])
def test_save_load_round_trip(tmp_path, option):
    panm = build(**{**RECIPE, "initial_read": False}, **{option: True}).eval()
    panm.save_pretrained(tmp_path)
    loaded = PANM.from_pretrained(tmp_path).double().eval()
    assert loaded.config == panm.config and getattr(loaded.config, option)
    inputs = batch(False)
    torch.testing.assert_close(
        run(loaded, *inputs).logits, run(panm, *inputs).logits, rtol=0, atol=0
    )


def test_the_option_must_be_a_bool():
    """`--set panm.output_initial_read=True` gives the string "True" (JSON is lower case)."""
    with pytest.raises(ValueError, match="output_initial_read must be true or false, got 'True'"):
        PANMConfig(output_initial_read="True")  # type: ignore[arg-type]
