"""An `lm+panm` model's scores with PANM's share of the answer set to other values.

    python docs/diagnostics/lm_share.py RUN SHARE [SHARE ...]

Loads RUN's best checkpoint, sets PANM's share of the mixture (`LMSeq2Seq.combine`) to each
SHARE in (0, 1) in turn and prints sequence exact match (token accuracy) on 100 development-set
sequences at 11, 22 and 44, greedy decoding as `panm eval` does. docs/lm.md used it to choose
`panm_prior`.
"""

from __future__ import annotations

import math
import sys

import torch

from panm.checkpoint import resolve_checkpoint
from panm.evaluation import evaluate_lengths
from panm.models.registry import load_model
from panm.tasks import get_task
from panm.training import read_run_config


def main(run: str, shares: list[float], lengths: tuple[int, ...] = (11, 22, 44)) -> None:
    torch.set_num_threads(1)
    model = load_model(resolve_checkpoint(run, "best")).eval()
    task = get_task(read_run_config(run).task)
    for share in shares:
        with torch.no_grad():
            model.panm_share.fill_(math.log(share / (1 - share)))
        scores = evaluate_lengths(model, task, list(lengths), count=100, test_set="dev")
        cells = [
            f"{n}: {100 * s.sequence_accuracy:.1f} ({100 * s.token_accuracy:.1f})"
            for n, s in scores.items()
        ]
        print(f"share {share}: " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], [float(s) for s in sys.argv[2:]])
