"""PANM over token-embedding memory with its read maps applied to the embedding table
(`factored_reads`, the default) equals the dense computation (the reads mapped one by one).
The dense computation itself is what every other PANM test checks."""

import inspect

import pytest
import torch

from panm.memory.panm import PANM, PANMConfig
from panm.models.registry import build_model
from panm.recipes import default_train_config
from panm.tasks import get_task
from panm.training import TrainConfig, sequence_loss, training_batch

SMALL = {"embed_dim": 24, "panm.hidden_dim": 20, "panm.pointer_dim": 12, "panm.key_dim": 10}
# The extrapolating design alone (Copy's recipe until commit bd4d1e4): POINTER_TASKS undone.
BASE_DESIGN = {
    "panm.initial_read": True,
    "panm.output_initial_read": False,
    "panm.output_previous_read": False,
    "panm.mode2_keys": "slot",
    "panm.mode2_selection": "soft",
    "panm.mode2_tie_margin": 0.0,
    "panm.mode2_decoys": True,
}
VARIANTS = {  # name: (task, overrides on top of the task's recipe)
    "copy recipe (both output reads, hard previous-slot Mode-2)": ("copy", {}),
    "mix recipe, 3 Mode-1": ("mix", {"panm.num_mode1": 3}),
    "dynamic recall recipe": ("dynamic_recall", {}),
    "the extrapolating design (soft Mode-2, initial read)": ("copy", BASE_DESIGN),
    "two input fields, sorting recipe": ("priority_sort", {}),
    # mode2_key_fields exists over factored reads only: these compare the rest of the recipe
    "id sort recipe, no ordinal ids": ("id_sort", {"ordinal_fields": (), "mode2_key_fields": ()}),
    "id sort recipe, ordinal ids": ("id_sort", {"mode2_key_fields": ()}),
    "no initial read, sum init, dot": (
        "copy",
        {
            **BASE_DESIGN,
            "panm.initial_read": False,
            "panm.controller_init": "memory_sum",
            "panm.address_similarity": "dot",
        },
    ),
    "no Mode-2": ("copy", {"panm.num_mode2": 0}),
    "soft exclusion, Mode-2 without decoys": (
        "reverse",
        {
            **BASE_DESIGN,
            "panm.mode2_exclusion": True,
            "panm.mode2_decoys": False,
            "panm.num_mode2": 2,
        },
    ),
    "output initial read alone, no initial read": (
        "mix",
        {**BASE_DESIGN, "panm.output_initial_read": True, "panm.initial_read": False},
    ),
    "output initial read and initial read, 3 Mode-1, 2 Mode-2": (
        "reverse",
        {
            **BASE_DESIGN,
            "panm.output_initial_read": True,
            "panm.num_mode1": 3,
            "panm.num_mode2": 2,
        },
    ),
    "output previous read alone, with initial read": (
        "reverse",
        {**BASE_DESIGN, "panm.output_previous_read": True},
    ),
    "Transformer decoder, its states to the output too, previous read": (
        "copy",
        {"decoder": "transformer", "decoder_layers": 1, "panm.output_input": True},
    ),
    "given controller state (GRU encoder, embedding memory)": (
        "copy",
        {"encoder": "gru", "panm.controller_init": "given"},
    ),
}


def _run(task_name: str, overrides: dict, factored: bool, training: bool):
    task = get_task(task_name)
    recipe = default_train_config(task_name, "panm").model_overrides
    torch.manual_seed(0)
    model = build_model("panm", task, {**recipe, **SMALL, **overrides, "factored_reads": factored})
    model.train(training)
    config = TrainConfig(task=task_name, batch_size=12, train_lengths=(2, 9))
    batch = training_batch(task, config, 0)
    torch.manual_seed(1)  # the same base addresses and decoys in both runs
    loss, logits = sequence_loss(
        model, batch, model.decoder_start_id(task), int(batch.tgt_mask.sum())
    )
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_factored_reads_equal_the_dense_reads(variant, training):
    task_name, overrides = VARIANTS[variant]
    dense_logits, dense_grads = _run(task_name, overrides, False, training)
    logits, grads = _run(task_name, overrides, True, training)
    torch.testing.assert_close(logits, dense_logits, rtol=1e-5, atol=1e-5)
    assert set(grads) == set(dense_grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dense_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_training_losses_stay_equal_over_steps():
    """The default Copy recipe, 25 Adam steps from one seed: the loss curves agree to float
    rounding (the two paths round differently, so they are not bit-identical)."""
    task = get_task("copy")
    recipe = default_train_config("copy", "panm").model_overrides
    config = TrainConfig(task="copy", batch_size=16)
    curves = []
    for factored in (False, True):
        torch.manual_seed(0)
        model = build_model("panm", task, {**recipe, **SMALL, "factored_reads": factored})
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for step in range(25):
            batch = training_batch(task, config, step)
            loss, _ = sequence_loss(
                model, batch, model.decoder_start_id(task), int(batch.tgt_mask.sum())
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        curves.append(torch.tensor(losses))
    assert curves[0][-1] < curves[0][0]  # it trains
    torch.testing.assert_close(curves[1], curves[0], rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    "initial_read, mode2_keys", [(True, "slot"), (False, "slot"), (True, "previous_slot")]
)
def test_per_step_inputs_with_token_memory(initial_read, mode2_keys):
    """PANM with a decoder input (input_dim > 0): memory given as rows of a table (rows padded
    on the right, on both sides and on the left), all steps at once and one step at a time
    (`plan` then `decode` per step, as cached generation does)."""
    config = PANMConfig(
        memory_dim=8,
        output_dim=5,
        hidden_dim=8,
        pointer_dim=4,
        key_dim=4,
        input_dim=3,
        initial_read=initial_read,
        decoy_slots=2,
        mode2_keys=mode2_keys,
        mode2_decoys=mode2_keys == "slot",  # a decoy has no previous slot
    )
    torch.manual_seed(0)
    panm = PANM(config)
    table = torch.randn(7, 8)
    rows = torch.randint(0, 7, (3, 5, 2))
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    memory = table[rows].sum(2)
    inputs = torch.randn(3, 4, 3)
    for training in (True, False):
        panm.train(training)
        torch.manual_seed(1)
        dense = panm(memory, mask, inputs=inputs)
        torch.manual_seed(1)
        factored = panm(memory, mask, inputs=inputs, memory_tokens=(rows, table))
        torch.testing.assert_close(factored.logits, dense.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(factored.mode2_weights, dense.mode2_weights)
        torch.testing.assert_close(factored.controller_state, dense.controller_state)
    plan = panm.plan(memory, mask, inputs.shape[1], memory_tokens=(rows, table))
    assert plan.reads is None  # the plan holds the reads' maps, not the reads
    stepped = torch.cat([panm.decode(plan, inputs[:, t : t + 1]) for t in range(4)], dim=1)
    torch.testing.assert_close(stepped, dense.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plan.controller_state, dense.controller_state)


def test_memory_tokens_are_checked():
    panm = PANM(PANMConfig(memory_dim=8, output_dim=5, hidden_dim=8, pointer_dim=4, key_dim=4))
    memory, mask = torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="rows must be long"):
        panm(memory, mask, num_steps=2, memory_tokens=(torch.zeros(2, 3), torch.zeros(4, 8)))
    with pytest.raises(ValueError, match="table must be"):
        rows = torch.zeros(2, 3, 1, dtype=torch.long)
        panm(memory, mask, num_steps=2, memory_tokens=(rows, torch.zeros(4, 7)))


@pytest.mark.parametrize(
    "overrides, factored",
    [
        ({}, True),
        ({"factored_reads": False}, False),
        ({"encoder": "gru", "memory_source": "encoder"}, False),  # encoder memory: dense
        ({"encoder": "gru", "memory_source": "sum"}, False),
    ],
)
def test_only_token_embedding_memory_is_factored(overrides, factored, monkeypatch):
    """The model passes its embedding table to PANM exactly when factored_reads is on and the
    memory holds the token embeddings; the parameters (and so checkpoints) are the same."""
    task = get_task("copy")
    recipe = default_train_config("copy", "panm").model_overrides
    model = build_model("panm", task, {**recipe, **SMALL, **overrides})
    given = []
    plan = PANM.plan

    def spy(self, *args, **kwargs):
        arguments = inspect.signature(plan).bind(self, *args, **kwargs).arguments
        given.append(arguments.get("memory_tokens"))
        return plan(self, *args, **kwargs)

    monkeypatch.setattr(PANM, "plan", spy)
    batch = training_batch(task, TrainConfig(task="copy", batch_size=4), 0)
    model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    assert len(given) == 1 and (given[0] is not None) == factored
    other = build_model(
        "panm", task, {**recipe, **SMALL, **overrides, "factored_reads": not factored}
    )
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes == {name: tuple(t.shape) for name, t in other.state_dict().items()}
