"""A GRU over precomputed input gates, with its gate arithmetic fused into few ops.

PANM's two recurrences, the controller GRU and the Pointer Unit's GRUs, are GRUs whose input
maps can be applied to all steps at once before the loop, so only the hidden map and the gate
arithmetic run step by step (`gru_run`, for G independent GRUs at once). At PANM's sizes a step
is a few small ops whose count, more than their arithmetic, sets its time, forward and backward
(every op is one more node for autograd), so a step uses five:

    [r, z] = sigmoid(x_rz + h_rz)        with [h_r, h_z, h_n] = W h_{t-1} + b (one `baddbmm`)
    n = tanh(x_n + r * h_n)              (`addcmul`)
    h_t = n + z (h_{t-1} - n)            (`lerp`; = (1 - z) n + z h_{t-1}, `nn.GRU`'s equations)

instead of the eleven of writing the gates one by one (two adds and two sigmoids for r and z,
four ops for the last line).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def gru_run(
    input_gates: Sequence[Tensor], state: Tensor | None, weight: Tensor, bias: Tensor
) -> list[Tensor]:
    """G independent GRUs over T steps from their input gates.

    input_gates: T tensors (G, B, 3H), W_ih x_t + b_ih of every step, [reset, update, new]
    along the last dimension (`nn.GRU`'s order); a step that repeats the previous step's tensor
    reuses its split. state: (G, B, H) the start state, None for zeros (then the first step
    needs no matmul); weight: (G, H, 3H) the hidden maps (the transpose of `nn.GRU`'s
    weight_hh); bias: (G, 1, 3H) their biases. Returns the states h_1 .. h_T, (G, B, H) each.
    """
    hidden = weight.shape[1]
    states: list[Tensor] = []
    previous_gates = None
    for gates in input_gates:
        if gates is not previous_gates:
            x_rz, x_n = gates.split([2 * hidden, hidden], dim=-1)
            previous_gates = gates
        hidden_gates = bias if state is None else torch.baddbmm(bias, state, weight)
        h_rz, h_n = hidden_gates.split([2 * hidden, hidden], dim=-1)
        reset, update = torch.sigmoid(x_rz + h_rz).split(hidden, dim=-1)
        candidate = torch.tanh(torch.addcmul(x_n, reset, h_n))
        if state is None:  # h_{t-1} = 0: h_t = n - z n
            state = torch.addcmul(candidate, update, candidate, value=-1)
        else:
            state = torch.lerp(candidate, state, update)
        states.append(state)
    return states
