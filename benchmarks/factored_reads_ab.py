"""Before/after of `factored_reads` in one process: the default-recipe PANM with the read maps on
the embedding table (`panm`, the default) and on the reads (`panm-dense`, the computation
before), interleaved with `panm-paper`, `attention` and, with --authors-code, the authors' code
(the timing of `panm bench-speed`: Copy, batch 128, length 10, width 128). `panm bench-speed`
times the default only; this script adds the `panm-dense` row.

    PYTHONPATH=src python benchmarks/factored_reads_ab.py [--authors-code DIR] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from panm.authors_code import authors_copy_setup, load_authors_code
from panm.speed import (
    SpeedConfig,
    build_row,
    fixed_batch,
    make_eval_step,
    make_train_step,
    model_setups,
    time_interleaved,
)
from panm.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-code", metavar="DIR")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task, config = get_task("copy"), SpeedConfig()
    setups = model_setups(config.width)
    setups["panm-dense"] = ("panm", {**setups["panm"][1], "factored_reads": False})
    batch = fixed_batch(task, config.train_length, config.batch_size, config.seed)
    rows = ("panm-dense", "panm", "panm-paper", "attention")
    models = {row: build_row(setups, row, config, task) for row in rows}
    authors = None
    if args.authors_code:
        code = load_authors_code(args.authors_code)
        authors = authors_copy_setup(
            code, config.width, config.batch_size, config.train_length, torch.device("cpu"), 0
        )
    for phase, make in (("train", make_train_step), ("eval", make_eval_step)):
        steps = {row: make(model, batch, task) for row, model in models.items()}
        if authors is not None:
            steps["authors"] = authors.train_step if phase == "train" else authors.eval_step
        timings = time_interleaved(steps, args.rounds, 5, 3, torch.device("cpu"))
        medians = {row: statistics.median(seconds) for row, seconds in timings.items()}
        print(phase, "  ".join(f"{row} {s * 1e3:.1f} ms" for row, s in medians.items()))
        for row in ("panm-dense", "panm", "panm-paper"):
            line = f"  {row:<11} {medians[row] / medians['attention']:.3f}x attention"
            if authors is not None:
                line += f", {medians['authors'] / medians[row]:.2f}x the authors' throughput"
            print(line)


if __name__ == "__main__":
    main()
