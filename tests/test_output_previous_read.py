"""`PANMConfig.output_previous_read`: the output MLP also takes the Mode-1 reads of the step
before (at step 0, the slots under the initial pointers).

Factored against dense reads, cached decoding and batch invariance are checked with the option
on in test_factored_reads.py, test_cached_decoding.py and test_panm.py; this file checks what
the new inputs hold, the parameter layout and the gradient (the save/load round trip is in
test_output_initial_read.py).
"""

import pytest
import torch
from panm_reference import RECIPE  # the extrapolating recipe's PANM settings, 3 decoys
from test_output_initial_read import SMALL, STEPS, batch, build, run

from panm import PANMConfig

G, D = 2, SMALL["memory_dim"]


@pytest.mark.parametrize("initial", [False, True], ids=["alone", "with initial read"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
def test_the_new_inputs_are_the_step_befores_reads(initial, training):
    """The plan's last G * D read columns at step t are its Mode-1 reads at step t - 1, and at
    step 0 the slots under the initial pointers (pointer 0 on a row's first valid slot,
    pointer 1 on its last), for right, left and both-sided padding."""
    options = {**RECIPE, "initial_read": False, "output_initial_read": initial}
    panm = build(**options, output_previous_read=True).train(training)
    memory, mask, _, _ = batch(False)
    torch.manual_seed(1)
    plan = panm.plan(memory, mask, STEPS)
    assert plan.reads is not None
    previous = plan.reads[..., -G * D :]
    torch.testing.assert_close(previous[:, 1:], plan.reads[:, :-1, : G * D], rtol=0, atol=0)
    for row, (first, last) in enumerate(((0, 4), (3, 6), (1, 3))):
        start = torch.cat([memory[row, first], memory[row, last]])
        torch.testing.assert_close(previous[row, 0], start, rtol=0, atol=0)


def test_only_the_output_mlps_first_layer_grows():
    """The same parameters, G * D more input columns at the end of the output MLP's first
    layer; with those columns zero, the outputs of the option off."""
    on = build(**RECIPE, output_previous_read=True).eval()
    off = build(**RECIPE).eval()
    state, off_state = on.state_dict(), off.state_dict()
    assert list(state) == list(off_state)
    weight = state["output_head.0.weight"]
    assert weight.shape == (off_state["output_head.0.weight"].shape[0], off_state[
        "output_head.0.weight"].shape[1] + G * D)  # fmt: skip
    with torch.no_grad():
        weight[:, -G * D :] = 0
        off.load_state_dict({**state, "output_head.0.weight": weight[:, : -G * D]})
    for tokens in (False, True):
        inputs = batch(tokens)
        torch.testing.assert_close(run(on, *inputs).logits, run(off, *inputs).logits)


@pytest.mark.parametrize("tokens", [False, True], ids=["memory", "token memory"])
def test_the_gradient_reaches_the_new_columns(tokens):
    options = {**RECIPE, "initial_read": False}
    panm = build(**options, output_previous_read=True, output_initial_read=True).train()
    memory, mask, memory_tokens, _ = batch(tokens)
    run(panm, memory, mask, memory_tokens, None).logits.square().sum().backward()
    grad = panm.output_head[0].weight.grad
    assert grad is not None
    assert (grad[:, -G * D :].abs().sum(0) > 0).all()  # every new column


def test_the_option_must_be_a_bool():
    with pytest.raises(ValueError, match="output_previous_read must be true or false"):
        PANMConfig(output_previous_read="true")  # type: ignore[arg-type]
