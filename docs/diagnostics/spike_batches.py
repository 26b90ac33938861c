"""Are the updates the spike guard skips the hard batches? (docs/chomsky.md, "duplicate_string")

    python docs/diagnostics/spike_batches.py CHECKPOINT COUNT [FACTOR]

CHECKPOINT is a checkpoint folder of a run (RUN/checkpoints/step-N). Draws COUNT fresh training
batches of the run's full training lengths and, without updating the model, computes each one's
loss, gradient norm (before clipping) and exact match in training mode (a random base address
per sequence), and its exact match in evaluation mode (base 0). Prints the batches whose norm is
above FACTOR (default 10) times the median of all COUNT, as `TrainConfig.skip_gradient_spikes`
would skip them, against the rest. Nothing is written.
"""

import dataclasses
import statistics
import sys
from pathlib import Path

import torch

from panm.evaluation import batch_correct
from panm.models.registry import load_model
from panm.tasks import get_task
from panm.training import clip_gradients, read_run_config, sequence_loss, training_batch

folder, count = Path(sys.argv[1]), int(sys.argv[2])
factor = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
torch.set_num_threads(1)
torch.manual_seed(0)
config = dataclasses.replace(read_run_config(folder.parent.parent), length_warmup=None)
task = get_task(config.task, **config.task_options)
model = load_model(folder)
bos_id = model.decoder_start_id(task)
rows = []  # (norm, loss, exact in training mode, exact in evaluation mode)
for i in range(count):
    batch = training_batch(task, config, config.steps + i)  # steps the run never drew
    tokens = int(batch.tgt_mask.sum())
    model.train()
    loss, logits = sequence_loss(model, batch, bos_id, tokens)
    model.zero_grad(set_to_none=True)
    loss.backward()
    norm = float(clip_gradients(model, config.grad_clip))
    train_exact, _ = batch_correct(logits.argmax(-1), batch)
    model.eval()
    with torch.no_grad():
        _, eval_logits = sequence_loss(model, batch, bos_id, tokens)
    eval_exact, _ = batch_correct(eval_logits.argmax(-1), batch)
    rows.append(
        (norm, loss.item(), train_exact.float().mean().item(), eval_exact.float().mean().item())
    )


def mean(group: list[tuple[float, ...]], column: int) -> float:
    return sum(row[column] for row in group) / max(len(group), 1)


median = statistics.median(row[0] for row in rows)
spikes = [row for row in rows if row[0] > factor * median]
rest = [row for row in rows if row[0] <= factor * median]
print(f"{count} batches; median gradient norm {median:.3f}; above {factor:g}x: {len(spikes)}")
for name, group in (("above", spikes), ("the rest", rest)):
    print(f"  {name}: loss {mean(group, 1):.3f}, exact {mean(group, 2):.3f} (training mode)")
print(f"  exact, all: {mean(rows, 2):.3f} (training mode), {mean(rows, 3):.3f} (evaluation mode)")
