"""`gru_run` (a GRU over precomputed input gates, its gate arithmetic fused into few ops)
against the recurrence written gate by gate, as PANM computed it before."""

import pytest
import torch

from panm.memory.recurrence import gru_run


def stacked_gru_run(input_gates, state, weight, bias):
    """`gru_run` over the steps of input_gates (T, G, B, 3H): the states (T, G, B, H)."""
    return torch.stack(gru_run(input_gates.unbind(0), state, weight, bias))


def autograd_gru(input_gates, state, weight, bias):
    """The reference: `nn.GRU`'s equations step by step with autograd ops."""
    states = []
    for x in input_gates.unbind(0):
        x_r, x_z, x_n = x.chunk(3, dim=-1)
        if state is None:
            h_r, h_z, h_n = bias.expand(*x.shape).chunk(3, dim=-1)
        else:
            h_r, h_z, h_n = torch.baddbmm(bias, state, weight).chunk(3, dim=-1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        state = (1 - update) * candidate + (0 if state is None else update * state)
        states.append(state)
    return torch.stack(states)


def make_inputs(steps, groups, zero_start, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch, hidden = 5, 4

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_(True)

    state = None if zero_start else rand(groups, batch, hidden)
    return (
        rand(steps, groups, batch, 3 * hidden),
        state,
        rand(groups, hidden, 3 * hidden),
        rand(groups, 1, 3 * hidden),
    )


@pytest.mark.parametrize("zero_start", [True, False], ids=["zero start", "given start"])
@pytest.mark.parametrize("steps, groups", [(1, 1), (1, 2), (3, 2), (6, 1)])
def test_gru_run_equals_the_autograd_recurrence(steps, groups, zero_start):
    inputs = make_inputs(steps, groups, zero_start, torch.float32)
    # a loss that weights every state differently (its own generator: order-independent)
    weights = torch.randn(steps, groups, 5, 4, generator=torch.Generator().manual_seed(1))
    results = []
    for function in (stacked_gru_run, autograd_gru):
        states = function(*inputs)
        given = [x for x in inputs if x is not None]
        grads = torch.autograd.grad((states * weights).sum(), given, allow_unused=True)
        results.append((states, grads))
    (states, grads), (expected_states, expected_grads) = results
    torch.testing.assert_close(states, expected_states, rtol=1e-6, atol=1e-6)
    for grad, expected in zip(grads, expected_grads, strict=True):
        # float32 rounding accumulates over the steps; gradcheck below checks float64 exactly
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("zero_start", [True, False], ids=["zero start", "given start"])
def test_gru_run_gradients_pass_gradcheck(zero_start):
    inputs = make_inputs(3, 2, zero_start, torch.float64)
    assert torch.autograd.gradcheck(stacked_gru_run, inputs)


def test_gru_run_with_repeated_and_strided_inputs():
    """Inputs as PANM passes them: the same gates tensor at every step and nn.GRU's weight_hh
    transposed (a strided view)."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True)
    x = torch.randn(5, 1, 3)
    gates = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)  # (B, 1, 12)
    start = torch.randn(1, 5, 4)
    step_gates = gates.transpose(0, 1)  # (G=1, B, 12)
    states = torch.stack(
        gru_run(
            [step_gates] * 3,
            start,
            gru.weight_hh_l0.t().unsqueeze(0),
            gru.bias_hh_l0.view(1, 1, -1),
        )
    )
    expected, _ = gru(x.expand(5, 3, 3), start)
    torch.testing.assert_close(states[:, 0].transpose(0, 1), expected, rtol=1e-6, atol=1e-6)
    states.square().sum().backward()
    reference = [p.grad.clone() for p in gru.parameters()]
    gru.zero_grad()
    gru(x.expand(5, 3, 3), start)[0].square().sum().backward()
    for grad, expected_grad in zip(reference, [p.grad for p in gru.parameters()], strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)
