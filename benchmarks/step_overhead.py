"""Fixed and batch-proportional cost of a training step: the step's CPU time at batch 2 (almost
only per-op costs: Python, dispatch, autograd) and at the benchmark's batch 128, for `panm` and
`attention` as `panm bench-speed` builds them (one thread, Copy, length 10, width 128).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/step_overhead.py
"""

import statistics
import time

import torch

from panm.speed import SpeedConfig, build_row, fixed_batch, make_train_step, model_setups
from panm.tasks import get_task

ROWS = ("panm", "attention")


def main() -> None:
    torch.set_num_threads(1)
    task, config = get_task("copy"), SpeedConfig()
    for batch_size in (2, 128):
        batch = fixed_batch(task, 10, batch_size, 0)
        steps = {
            row: make_train_step(build_row(model_setups(128), row, config, task), batch, task)
            for row in ROWS
        }
        for step in steps.values():
            for _ in range(3):
                step()
        timings: dict[str, list[float]] = {row: [] for row in ROWS}
        for _ in range(7):  # interleaved rounds of 5 steps, CPU time of this process
            for row, step in steps.items():
                start = time.process_time()
                for _ in range(5):
                    step()
                timings[row].append((time.process_time() - start) / 5)
        medians = "  ".join(
            f"{row} {statistics.median(t) * 1e3:.1f} ms" for row, t in timings.items()
        )
        print(f"batch {batch_size:>3}: {medians}")


if __name__ == "__main__":
    main()
