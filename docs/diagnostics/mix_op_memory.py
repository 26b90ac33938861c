"""Where Mix goes wrong at long lengths: the controller's memory of the op (docs/results.md,
issue 21).

    python docs/diagnostics/mix_op_memory.py RUN [COUNT]

RUN is a Mix run of the issue-21 Mix recipe (commit eb37536: the extrapolating design with
`output_initial_read`, or before it the design alone); each length (11, 22, 44, 88) is tested
on the first COUNT (default 300) of `panm eval`'s development examples. The forward pointer
reads s[t] at step t (copy's answer), the backward one s[n - 2 - t], so reverse's answer
s[n - 1 - t] is the backward read of the step before (diagnosis 2's delay line): the op
decides which read the output takes. Prints, per length and op:

- sequence exact match and the first wrong output step (histogram in steps of length / 8);
- of the wrong outputs, how many are the *other* op's answer (copy: the backward pointer's
  previous read; reverse: the forward pointer's current read);
- how sharp Mode-2 is and how often its argmax slot holds the answer (it is not used);
- the mean logit margin (right token minus the best other) at every (length / 8)-th step;
- an op probe of the controller state at the same steps: its projection on the
  difference of the mean states of copy and of reverse at length 10 (all steps), scaled so that
  those means are at +1 (copy) and -1 (reverse); the state starts from the mean of memory and
  the step-0 read of the op slot, and carries the op from then on;
- the exact match when the controller's op probe is reset after every step to the op's own
  value (+1 copy, -1 reverse), then to the other op's: an intervention that tells whether the
  probe's direction is what decides between the ops.
"""

import sys

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import fresh_examples
from panm.memory.panm import _gru_over_gates
from panm.tasks import get_task
from panm.tasks.algorithmic import NUM_SPECIALS
from panm.tasks.base import collate

run = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
torch.set_num_threads(1)
model, task = load_checkpoint_model(run).eval(), get_task("mix")
gru = model.memory.controller


def decode(length: int, op: str, hold: float | None = None):
    """The batch of `op` examples among the first `count` of `length`, its trace and the
    controller's states (B, T, hidden); with `hold`, the states and the logits (in
    trace.logits) of a controller whose op probe is reset to `hold` after every step."""
    examples = [e for e in fresh_examples(task, length, count) if e["op"] == op]
    batch = collate([task.encode(e) for e in examples])
    with torch.no_grad():
        trace = model.trace(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
        memory, _ = model._encode(batch.src, batch.src_mask)
        plan = model.memory.plan(
            memory, batch.src_mask, length, memory_tokens=model._memory_tokens(batch.src)
        )
        assert plan.read_gates is not None  # the recipe's token-embedding memory
        if hold is None:
            states = _gru_over_gates(  # step-major (T, B, ...) in and out
                plan.read_gates.transpose(0, 1),
                plan.controller_state,
                gru.weight_hh_l0,
                gru.bias_hh_l0,
            )[0]
            return batch, trace, states.transpose(0, 1)
        state, held = plan.controller_state, []
        for gates in plan.read_gates.transpose(0, 1).split(1):
            state = _gru_over_gates(gates, state, gru.weight_hh_l0, gru.bias_hh_l0)[1]
            state = state + (hold - probe(state)).unsqueeze(-1) * direction / 2
            held.append(state)
        states = torch.stack(held, dim=1)
        first_layer, activation, last_layer = model.memory.output_head
        # read_features holds the first layer's bias
        hidden = torch.nn.functional.linear(states, first_layer.weight[:, : gru.hidden_size])
        trace.logits = last_layer(activation(hidden + plan.read_features))
    return batch, trace, states


def probe(states: torch.Tensor) -> torch.Tensor:
    """The op probe of controller states (..., hidden) -> (...): +1 copy, -1 reverse."""
    return (states - middle) @ direction / (direction @ direction / 2)


reference = {op: decode(10, op)[2].flatten(0, 1).mean(0) for op in task.ops}
direction = reference["copy"] - reference["reverse"]
middle = (reference["copy"] + reference["reverse"]) / 2
HOLD = {"copy": 1.0, "reverse": -1.0}
for length in (11, 22, 44, 88):
    eighth = max(1, length // 8)
    for op in task.ops:
        batch, trace, states = decode(length, op)
        predicted = trace.logits.argmax(-1)  # (B, T)
        wrong = predicted != batch.tgt
        first = wrong.float().argmax(1)[wrong.any(1)]
        exact = 1 - wrong.any(1).float().mean()
        print(f"length {length}, {op}: {len(wrong)} sequences, exact {exact:.3f}")
        print(f"  first wrong step, per {eighth} steps:", torch.bincount(first // eighth).tolist())
        tokens = batch.src[..., 0] - NUM_SPECIALS  # (B, L): slot 0 holds the op
        forward, backward = (trace.mode1_weights[:, :, g].argmax(-1) for g in (0, 1))  # (B, T)
        if op == "copy":  # the other op's answer: the backward pointer's previous read
            previous = torch.cat([backward.new_full((len(wrong), 1), length), backward[:, :-1]], 1)
            other = tokens.gather(1, previous)
        else:
            other = tokens.gather(1, forward)
        print(f"  wrong outputs: {int(wrong.sum())}, the other op's answer in ", end="")
        print(f"{int((predicted == other)[wrong].sum())}")
        largest = trace.mode2_weights[:, :, 0].max(-1).values.mean()
        print(
            f"  Mode-2: mean largest weight {largest:.2f}, its argmax slot holds the answer in ",
            end="",
        )
        mode2_tokens = tokens.gather(1, trace.mode2_weights[:, :, 0].argmax(-1))
        print(f"{(mode2_tokens == batch.tgt).float().mean():.3f} of the steps")
        logits = trace.logits
        right = logits.gather(2, batch.tgt.unsqueeze(-1))[..., 0]
        best_other = logits.scatter(2, batch.tgt.unsqueeze(-1), float("-inf")).max(-1).values
        margin = (right - best_other).mean(0)  # (T,)
        print(
            f"  margin at steps 0, {eighth}, {2 * eighth}, ...:",
            [round(m, 1) for m in margin[::eighth].tolist()],
        )
        op_probe = probe(states).mean(0)  # (T,)
        print("  op probe at the same steps:", [round(p, 2) for p in op_probe[::eighth].tolist()])
        for hold in (HOLD[op], -HOLD[op]):  # the op's own value, then the other op's
            batch, held, _ = decode(length, op, hold=hold)
            exact = (held.logits.argmax(-1) == batch.tgt).all(1).float().mean()
            print(f"  exact with the op probe reset to {hold:+.0f} after every step: {exact:.3f}")
