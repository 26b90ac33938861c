"""Measuring a model: exact-match and per-token accuracy per test length, and predictions.

Test examples are fresh draws from a generator seeded by (task, length, seed), never seen in
training (training and validation batches come from differently seeded streams, at the training
lengths). Generated tasks have two named test sets (:data:`TEST_SETS`), the same lengths drawn
with different seeds:

- "dev", the development test set (seed 0): for exploring. Every recipe choice up to commit
  60b0d94 was made looking at its scores, so figures on it are not unbiased estimates.
- "final", the final test set: only for published tables, never for choosing anything.

A data-set task (SCAN) has one test set, fixed by its split's data; both names give it (the name
is still recorded with the scores). Development choices on such a task are made on its "valid"
part, which holds training lengths only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from panm.models.base import Seq2SeqModel
from panm.tasks.base import Batch, Task, collate


@dataclass
class Accuracy:
    """Accuracy of one set of examples: exact match of whole outputs, and per target token.

    oracle_sequence_accuracy (tasks with EOS only): exact match of the output tokens when the
    model is not allowed to stop before the target's length (its stopping is not judged).
    """

    sequence_accuracy: float
    token_accuracy: float
    count: int
    oracle_sequence_accuracy: float | None = None

    def as_dict(self) -> dict:
        values = {
            "sequence_accuracy": self.sequence_accuracy,
            "token_accuracy": self.token_accuracy,
            "count": self.count,
        }
        if self.oracle_sequence_accuracy is not None:
            values["oracle_sequence_accuracy"] = self.oracle_sequence_accuracy
        return values


Score = tuple[bool, int, int, bool | None]
"""One example's score: (exact match, correct target tokens, target tokens, exact match with
the oracle length or None)."""


TEST_SETS: dict[str, int] = {"dev": 0, "final": 271_828}
"""Test-set name -> the seed of its examples. The final seed was picked once, after development,
and was never used before; nothing may be tuned on its scores."""


def seed_of_test_set(name: str) -> int:
    """The seed of the named test set (see :data:`TEST_SETS`); ValueError for an unknown name."""
    if name not in TEST_SETS:
        raise ValueError(f"unknown test set {name!r}; choose from: {', '.join(TEST_SETS)}")
    return TEST_SETS[name]


def fresh_examples(task: Task, length: int, count: int, seed: int = 0) -> list[dict]:
    """`count` fresh examples of `length`, the same for every model given the same seed
    (`seed`: see :data:`TEST_SETS`; other seeds give other examples)."""
    rng = random.Random(f"test/{task.name}/{length}/{seed}")
    return [task.sample(rng, length) for _ in range(count)]


@torch.no_grad()
def predict_ids(model: Seq2SeqModel, task: Task, batch: Batch) -> torch.Tensor:
    """Greedy output ids (B, T) for a batch, T = the batch's target length.

    Tasks without EOS decode exactly the target length (it is a function of the input); tasks
    with EOS decode as many steps and the caller cuts each output at its first EOS.
    """
    steps = batch.tgt.shape[1]
    return model.generate(batch.src, batch.src_mask, steps, bos_id=model.decoder_start_id(task))


def batch_correct(predicted: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample exact-match flags (B,) and per-sample correct-token counts (B,)."""
    hits = (predicted == batch.tgt) & batch.tgt_mask
    exact = (hits | ~batch.tgt_mask).all(dim=1)
    return exact, hits.sum(dim=1)


@torch.no_grad()
def oracle_exact(model: Seq2SeqModel, task: Task, batch: Batch) -> torch.Tensor:
    """Per-sample exact match (B,) of the tokens before EOS, decoding with the oracle length."""
    assert task.eos_id is not None
    lengths = batch.tgt_mask.sum(dim=1) - 1  # targets end with EOS
    predicted = model.generate(
        batch.src,
        batch.src_mask,
        batch.tgt.shape[1],
        bos_id=model.decoder_start_id(task),
        eos_id=task.eos_id,
        min_steps=lengths,
    )
    before_eos = torch.arange(batch.tgt.shape[1], device=lengths.device) < lengths.unsqueeze(1)
    return ((predicted == batch.tgt) | ~before_eos).all(dim=1)


@torch.no_grad()
def score(
    model: Seq2SeqModel,
    task: Task,
    examples: list[dict],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    oracle: bool = False,
) -> list[Score]:
    """Per example, its :data:`Score`, in eval mode. oracle=True (tasks with EOS only) also
    decodes with the oracle length, which doubles the cost."""
    was_training = model.training
    model.eval()
    scores: list[Score] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = collate([task.encode(e) for e in chunk]).to(device)
        exact, hits = batch_correct(predict_ids(model, task, batch), batch)
        totals = batch.tgt_mask.sum(dim=1)
        flags: list[bool | None] = [None] * len(chunk)
        if oracle and task.eos_id is not None:
            flags = oracle_exact(model, task, batch).tolist()
        scores.extend(zip(exact.tolist(), hits.tolist(), totals.tolist(), flags, strict=True))
    model.train(was_training)
    return scores


def summarize(scores: list[Score]) -> Accuracy:
    oracle = [s[3] for s in scores if s[3] is not None]
    return Accuracy(
        sequence_accuracy=sum(s[0] for s in scores) / len(scores),
        token_accuracy=sum(s[1] for s in scores) / sum(s[2] for s in scores),
        count=len(scores),
        oracle_sequence_accuracy=sum(oracle) / len(oracle) if oracle else None,
    )


def accuracy(
    model: Seq2SeqModel,
    task: Task,
    examples: list[dict],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> Accuracy:
    """Exact-match and token accuracy of `model` on `examples`."""
    return summarize(score(model, task, examples, batch_size, device))


def evaluate_lengths(
    model: Seq2SeqModel,
    task: Task,
    lengths: list[int],
    count: int = 500,
    test_set: str = "dev",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[int | str, Accuracy]:
    """Accuracy at each test length on the named test set (see :data:`TEST_SETS`).

    Generated tasks: `count` examples of each length from that set. Data-set tasks (SCAN): every
    example of the split's test part whose target has that length, plus "all" for the whole
    test part (`count` and `test_set` do not change it).
    """
    seed = seed_of_test_set(test_set)
    examples = task.examples("test")
    if examples is None:
        return {
            length: accuracy(
                model, task, fresh_examples(task, length, count, seed), batch_size, device
            )
            for length in lengths
        }
    scores = score(model, task, examples, batch_size, device, oracle=task.eos_id is not None)
    results: dict[int | str, Accuracy] = {}
    for length in lengths:
        chosen = [s for s, e in zip(scores, examples, strict=True) if len(e["target"]) == length]
        if chosen:
            results[length] = summarize(chosen)
    results["all"] = summarize(scores)
    return results


@torch.no_grad()
def predict(
    model: Seq2SeqModel,
    task: Task,
    examples: list[dict],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[list]:
    """The model's output for each example, in the task's JSON values."""
    model.eval()
    outputs: list[list] = []
    for start in range(0, len(examples), batch_size):
        encoded = [task.encode(e) for e in examples[start : start + batch_size]]
        batch = collate(encoded).to(device)
        ids = predict_ids(model, task, batch).tolist()
        for row, e in zip(ids, encoded, strict=True):
            outputs.append(task.decode_output(row[: len(e.tgt)]))
    return outputs
