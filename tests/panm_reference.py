"""Seeded PANM runs whose outputs and gradients are stored in tests/data/panm_reference.pt.

The stored values were made by this file at commit f28e6d4, before the training step's
recurrences were rewritten with fewer ops (`panm.memory.recurrence`):
`test_reference.py` checks that today's code computes the same function (outputs, gradients and
greedy tokens to 1e-5) in training and evaluation, over right, left and both-sided padding, for
the default recipe and the options the faster code touches (pointer window 0 / K, "recent" /
"latest" inputs, the three address similarities, with and without the initial read, per-step
decoder inputs, token and encoder memory, Mode-2 variants).

    PYTHONPATH=src python tests/panm_reference.py    # rewrites the file (only at f28e6d4)
"""

from __future__ import annotations

from pathlib import Path

import torch

from panm.memory.panm import PANM, PANMConfig
from panm.models.registry import build_model
from panm.recipes import PANM_EXTRAPOLATING, default_train_config
from panm.tasks import get_task
from panm.tasks.base import collate
from panm.training import (
    TrainConfig,
    clip_gradients,
    make_optimizer,
    sequence_loss,
    training_batch,
)

REFERENCE = Path(__file__).parent / "data" / "panm_reference.pt"
SMALL = {"embed_dim": 16, "panm.hidden_dim": 12, "panm.pointer_dim": 8, "panm.key_dim": 6}
PAPER = {
    "encoder": "gru",
    "memory_source": "encoder",
    "panm.address_similarity": "dot",
    "panm.decoy_slots": 0,
    "panm.initial_read": False,
    "panm.controller_init": "memory_sum",
    "panm.pointer_window": 0,
    "panm.pointer_inputs": "recent",
    "panm.eval_pointers": "soft",
}
MODEL_CASES = {  # name -> (task, overrides on top of the task's PANM recipe at f28e6d4)
    "copy recipe": ("copy", {}),
    "copy recipe, dense reads": ("copy", {"factored_reads": False}),
    "paper": ("copy", PAPER),
    "cosine, window 2 recent, no initial read": (
        "reverse",
        {
            "panm.address_similarity": "cosine",
            "panm.pointer_window": 2,
            "panm.pointer_inputs": "recent",
            "panm.initial_read": False,
            "panm.controller_init": "memory_sum",
        },
    ),
    "dot, window 1, 3 + 2 pointers": (
        "copy",
        {
            "panm.address_similarity": "dot",
            "panm.pointer_window": 1,
            "panm.num_mode1": 3,
            "panm.num_mode2": 2,
        },
    ),
    "SCAN, previous-token inputs": ("scan", {}),
    "SCAN, dense reads, window 0": (
        "scan",
        {"factored_reads": False, "panm.pointer_window": 0, "panm.pointer_inputs": "recent"},
    ),
    "SCAN, transformer decoder": (
        "scan",
        {
            "decoder": "transformer",
            "decoder_layers": 1,
            "transformer_heads": 2,
            "transformer_ff_dim": 16,
        },
    ),
    "priority sort recipe": ("priority_sort", {}),
    # the dynamic recall recipe of commit f28e6d4: forward-GRU memory
    "dynamic recall recipe": (
        "dynamic_recall",
        {"encoder": "gru", "memory_source": "encoder", "encoder_bidirectional": False},
    ),
}
# At commit f28e6d4, when these values were stored, Copy, Reverse and Dynamic Recall trained on
# PANM_EXTRAPOLATING (with Dynamic Recall's memory above); they share another recipe since
# (`panm.recipes.POINTER_TASKS`), so their cases start from PANM_EXTRAPOLATING.
FORMER_RECIPE_TASKS = ("copy", "reverse", "dynamic_recall")
RECIPE = dict(
    address_similarity="bitwise",
    decoy_slots=3,
    initial_read=True,
    controller_init="memory_mean",
    pointer_window=3,
    pointer_inputs="latest",
    eval_pointers="hard",
)
MEMORY_CASES = {  # name -> PANMConfig fields (memory width 8, table of 7 rows)
    "recipe": RECIPE,
    "recipe with inputs": {**RECIPE, "input_dim": 5},
    "paper": {},
    "paper with inputs, window 2": {"input_dim": 5, "pointer_window": 2},
}
SIDES = {
    "right": ["right"] * 4,
    "left": ["left"] * 4,
    "mixed": ["left", "right", "both", "left"],
}


def run_model_case(name: str, training: bool) -> dict[str, torch.Tensor]:
    """A small model of `MODEL_CASES[name]` on a mixed-length (right-padded) training batch:
    the logits, and in training the loss gradients of every parameter, in evaluation the
    greedy tokens."""
    task_name, overrides = MODEL_CASES[name]
    if task_name in FORMER_RECIPE_TASKS:
        recipe = PANM_EXTRAPOLATING
    else:
        recipe = default_train_config(task_name, "panm").model_overrides
    if task_name == "scan":  # previous-token decoder input (SCAN has a BOS token)
        task = get_task("scan", split="cutoff-44")
        examples = [e for e in task.examples("train") if len(e["target"]) < 14][::97][:10]
        batch = collate([task.encode(e) for e in examples])
    else:
        task = get_task(task_name)
        config = TrainConfig(task=task_name, batch_size=10, train_lengths=(2, 9))
        batch = training_batch(task, config, 0)
    torch.manual_seed(0)
    model = build_model("panm", task, {**recipe, **SMALL, **overrides})
    model.train(training)
    torch.manual_seed(1)  # the same base addresses and decoys in every run
    loss, logits = sequence_loss(
        model, batch, model.decoder_start_id(task), int(batch.tgt_mask.sum())
    )
    out = {"logits": logits.detach()}
    if training:
        loss.backward()
        out.update({f"grad {n}": p.grad for n, p in model.named_parameters() if p.grad is not None})
    else:
        with torch.no_grad():
            tokens = model.generate(batch.src, batch.src_mask, batch.tgt.shape[1], task.bos_id)
        out["generated"] = tokens
    return out


def padded_memory(sides: list[str], input_dim: int) -> dict[str, torch.Tensor]:
    """Four token sequences (lengths 5, 2, 7, 9) of a 7-row table, padded on `sides` to 11
    slots (NaN in the padding), and per-step inputs when input_dim > 0."""
    generator = torch.Generator().manual_seed(3)
    table = torch.randn(7, 8, generator=generator)
    lengths = [5, 2, 7, 9]
    rows = torch.zeros(4, 11, 1, dtype=torch.long)
    mask = torch.zeros(4, 11, dtype=torch.bool)
    for i, (n, side) in enumerate(zip(lengths, sides, strict=True)):
        first = {"right": 0, "left": 11 - n, "both": (11 - n) // 2}[side]
        rows[i, first : first + n, 0] = torch.randint(0, 7, (n,), generator=generator)
        mask[i, first : first + n] = True
    inputs = torch.randn(4, 6, input_dim, generator=generator) if input_dim else None
    return {"table": table, "rows": rows, "mask": mask, "inputs": inputs}


def run_memory_case(
    name: str, sides: str, training: bool, factored: bool
) -> dict[str, torch.Tensor]:
    """`PANM` alone (`MEMORY_CASES[name]`) over padded token memory: every output field and, in
    training, the gradients of the squared logits' sum for the parameters, table and inputs."""
    options = MEMORY_CASES[name]
    config = PANMConfig(
        memory_dim=8,
        output_dim=5,
        hidden_dim=12,
        pointer_dim=6,
        key_dim=6,
        address_bits=5,
        **options,
    )
    torch.manual_seed(0)
    panm = PANM(config).train(training)
    data = padded_memory(SIDES[sides], options.get("input_dim", 0))
    table = data["table"].requires_grad_(True)
    inputs = data["inputs"]
    if inputs is not None:
        inputs.requires_grad_(True)
    memory = table[data["rows"]].sum(2).masked_fill(~data["mask"].unsqueeze(-1), float("nan"))
    torch.manual_seed(1)
    out = panm(
        memory,
        data["mask"],
        num_steps=None if inputs is not None else 6,
        inputs=inputs,
        memory_tokens=(data["rows"], table) if factored else None,
    )
    result = {
        field: getattr(out, field).detach()
        for field in (
            "logits",
            "pointers",
            "mode1_weights",
            "mode2_weights",
            "mode2_pointers",
            "addresses",
            "controller_state",
        )
    }
    if training:
        out.logits.square().sum().backward()
        result["grad table"] = table.grad
        if inputs is not None:
            result["grad inputs"] = inputs.grad
        result.update(
            {f"grad {n}": p.grad for n, p in panm.named_parameters() if p.grad is not None}
        )
    return result


def training_curve(steps: int = 25) -> dict[str, torch.Tensor]:
    """The losses of `steps` training steps of a small Copy model of the f28e6d4 recipe
    (PANM_EXTRAPOLATING) from one seed, as `panm.training.train` takes a step (batch 16,
    clipping at 1, Adam at 1e-3)."""
    task = get_task("copy")
    torch.manual_seed(0)
    model = build_model("panm", task, {**PANM_EXTRAPOLATING, **SMALL})
    optimizer = make_optimizer(model, 1e-3)
    config = TrainConfig(task="copy", batch_size=16)
    losses = []
    for step in range(steps):
        batch = training_batch(task, config, step)
        loss, _ = sequence_loss(model, batch, None, int(batch.tgt_mask.sum()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, 1.0)
        optimizer.step()
        losses.append(loss.item())
    return {"losses": torch.tensor(losses)}


def all_cases() -> dict[str, dict[str, torch.Tensor]]:
    """Every case's results, keyed by a readable name."""
    torch.set_num_threads(1)
    results = {}
    for name in MODEL_CASES:
        for training in (True, False):
            results[f"model {name} {'train' if training else 'eval'}"] = run_model_case(
                name, training
            )
    for name in MEMORY_CASES:
        for sides in SIDES:
            for training in (True, False):
                for factored in (True, False):
                    key = f"memory {name} {sides} {'train' if training else 'eval'} {factored}"
                    results[key] = run_memory_case(name, sides, training, factored)
    results["training curve"] = training_curve()
    return results


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    torch.save(all_cases(), REFERENCE)
    print(f"wrote {REFERENCE}")
