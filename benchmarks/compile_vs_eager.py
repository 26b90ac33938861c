"""`panm train --compile` against eager: the default-recipe PANM training step on Copy (batch 128,
length 10, width 128), eager and `torch.compile`d copies of one model interleaved with the
attention baseline, after checking that the compiled step equals the eager one.

    PYTHONPATH=src python benchmarks/compile_vs_eager.py [--rounds 5] [--threads 1]

Inductor draws random numbers from its own generator unless `fallback_random` is set, so the check
sets it (the model samples base addresses and decoy slots in training); `--compile` itself does not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch._inductor.config

from panm.speed import (
    SpeedConfig,
    build_row,
    fixed_batch,
    make_train_step,
    model_setups,
    time_interleaved,
)
from panm.tasks import get_task
from panm.training import sequence_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch._inductor.config.fallback_random = True
    task, config = get_task("copy"), SpeedConfig()
    setups = model_setups(config.width)
    batch = fixed_batch(task, config.train_length, config.batch_size, config.seed)
    eager = build_row(setups, "panm", config, task)
    twin = build_row(setups, "panm", config, task)
    compiled = torch.compile(twin)
    tokens = int(batch.tgt_mask.sum())
    started = time.perf_counter()
    torch.manual_seed(3)
    compiled_loss, compiled_logits = sequence_loss(compiled, batch, task, tokens)
    compiled_loss.backward()
    print(f"first compiled step (compiling): {time.perf_counter() - started:.1f} s")
    torch.manual_seed(3)
    eager_loss, eager_logits = sequence_loss(eager, batch, task, tokens)
    eager_loss.backward()
    grads = [
        (a.grad - b.grad).abs().max().item()
        for a, b in zip(eager.parameters(), twin.parameters(), strict=True)
        if a.grad is not None
    ]
    logits = (compiled_logits - eager_logits).abs().max().item()
    print(f"compiled vs eager: max |delta logits| {logits:.2e}, max |delta grad| {max(grads):.2e}")
    steps = {
        "attention": make_train_step(build_row(setups, "attention", config, task), batch, task),
        "panm": make_train_step(eager, batch, task),
        "panm-compiled": make_train_step(compiled, batch, task),
    }
    timings = time_interleaved(steps, args.rounds, 5, 2, torch.device("cpu"))
    medians = {row: statistics.median(seconds) for row, seconds in timings.items()}
    for row, seconds in medians.items():
        print(f"{row:<14} {seconds * 1e3:7.1f} ms/step  {seconds / medians['attention']:.3f}x attn")


if __name__ == "__main__":
    main()
