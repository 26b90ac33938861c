"""Replays a run from one of its checkpoints and prints each step's loss and gradient norm
(docs/chomsky.md, "Gradient spikes").

    python docs/diagnostics/gradient_spikes.py CHECKPOINT STOP [FACTOR] [--beta2 B]

CHECKPOINT is a checkpoint folder of a run (RUN/checkpoints/step-N, holding its trainer state);
the replay trains from step N to STOP with the run's own config, batches, optimizer state and
random state, as `panm train --resume` would, on the CPU and for runs on fresh examples without
padded batches (not for `train_examples` or `pad_multiple` runs). It prints every step's
training loss and gradient norm (before clipping), and for a norm above 20 the three parameters
with the largest gradients. With FACTOR it skips the update of a step whose norm is above
FACTOR times the recent median, as `TrainConfig.skip_gradient_spikes` does, whatever the run's
config says. With --beta2 the replay continues with that Adam second-moment decay (the
optimizer's saved moments kept), whatever the run's config says. Nothing is written.
"""

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from panm.checkpoint import load_trainer_state
from panm.models.registry import load_model
from panm.tasks import get_task
from panm.training import (
    SPIKE_WINDOW,
    clip_gradients,
    is_gradient_spike,
    make_optimizer,
    read_run_config,
    sequence_loss,
    training_batch,
)

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint", type=Path)
parser.add_argument("stop", type=int)
parser.add_argument("factor", type=float, nargs="?")
parser.add_argument("--beta2", type=float)
args = parser.parse_args()
folder, stop = args.checkpoint, args.stop
torch.set_num_threads(1)
config = read_run_config(folder.parent.parent)
config = dataclasses.replace(
    config, skip_gradient_spikes=args.factor, adam_beta2=args.beta2 or config.adam_beta2
)
task = get_task(config.task, **config.task_options)
model = load_model(folder)
state = load_trainer_state(folder)
optimizer = make_optimizer(model, config.lr, config.adam_beta2)
optimizer.load_state_dict(state["optimizer"])
for group in optimizer.param_groups:  # the saved state holds the run's own betas
    group["betas"] = (group["betas"][0], config.adam_beta2)
torch.set_rng_state(state["rng"])
step, recent, skipped = state["step"], state.get("recent_gradient_norms", []), 0
bos_id = model.decoder_start_id(task)
model.train()
while step < stop:
    batch = training_batch(task, config, step)
    loss, _ = sequence_loss(model, batch, bos_id, int(batch.tgt_mask.sum()))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    largest = sorted(
        (float(p.grad.norm()), name) for name, p in model.named_parameters() if p.grad is not None
    )[::-1][:3]
    norm = float(clip_gradients(model, config.grad_clip))
    spike = is_gradient_spike(norm, recent, config.skip_gradient_spikes)
    if math.isfinite(norm):
        recent = [*recent, norm][-SPIKE_WINDOW:]
    if spike:
        skipped += 1
    else:
        optimizer.step()
    step += 1
    line = f"step {step} loss {loss.item():.3f} gradient norm {norm:.2f}"
    if norm > 20:
        line += " largest: " + ", ".join(f"{name} {value:.1f}" for value, name in largest)
    print(line + (" (skipped)" if spike else ""), flush=True)
print(f"skipped {skipped} of {stop - state['step']} steps")
