"""Which part of an `lm+panm` model answers: teacher-forced accuracy of each logit term.

    python docs/diagnostics/lm_parts.py RUN [LENGTH ...]

For fresh development-set sequences of each length (default 11, 22, 44; 40 each), the model
reads the gold answer tokens (teacher forcing, so exact match equals greedy decoding's) and this
prints the token accuracy and exact match of: the LM terms alone (the LM's logits plus the
answer head), PANM (with its controller input where the model has one), and the model's answer
(the mixture of the two, `LMSeq2Seq.combine`); PANM's share of the mixture; and where Mode-1
pointer 0 stands at each step relative to the step index (a pointer that walks the operands
reads slot t + 1 at step t: the controller reads slot 0 before step 0), and the first step
where it does not, over the sequences (the length where it never leaves).
"""

from __future__ import annotations

import sys

import torch

from panm.checkpoint import resolve_checkpoint
from panm.evaluation import fresh_examples, seed_of_test_set
from panm.models.registry import load_model
from panm.tasks import collate, get_task
from panm.training import read_run_config


def main(run: str, lengths: list[int]) -> None:
    torch.set_num_threads(1)
    model = load_model(resolve_checkpoint(run, "best")).eval()
    task = get_task(read_run_config(run).task)
    for length in lengths:
        examples = fresh_examples(task, length, 40, seed_of_test_set("dev"))
        batch = collate([task.encode(e) for e in examples])
        parts: dict[str, torch.Tensor] = {}

        def split(memory, memory_mask, controller, last, parts=parts):
            lm = model.lm_logits(last)
            inputs = steps = None
            if model.config.controller_layer is None:
                steps = lm.shape[1]
            else:
                inputs = model.controller_in(controller)
            panm = model.memory(memory, memory_mask, num_steps=steps, inputs=inputs)
            parts.update(lm=lm, panm=panm.logits, answer=model.combine(lm, panm.logits))
            parts["slots"] = panm.mode1_weights[:, :, 0].argmax(-1)
            return parts["answer"]

        model._logits = split
        tgt_in = torch.cat([torch.zeros_like(batch.tgt[:, :1]), batch.tgt[:, :-1]], dim=1)
        with torch.no_grad():
            model(batch.src, batch.src_mask, tgt_in=tgt_in)
        cells = []
        for name in ("lm", "panm", "answer"):
            right = parts[name].argmax(-1) == batch.tgt
            cells.append(f"{name} {right.float().mean():.3f}/{right.all(1).float().mean():.3f}")
        ahead = parts["slots"] - torch.arange(length)
        cells.append(f"pointer 0 at t+1: {(ahead == 1).float().mean():.3f}")
        off = (ahead != 1).int()  # the first step where the walk leaves t + 1 (length: never)
        first_off = torch.where(off.any(1), off.argmax(1), torch.tensor(length))
        cells.append(
            f"first step off t+1: min {first_off.min()} median {first_off.median()}"
            f" max {first_off.max()}"
        )
        cells.append(f"PANM's share: {torch.sigmoid(model.panm_share).item():.3f}")
        print(f"{length}: " + "  ".join(cells) + "  (token/exact)")


if __name__ == "__main__":
    main(sys.argv[1], [int(n) for n in sys.argv[2:]] or [11, 22, 44])
