"""binary_addition's PANM options: pointers that start where the caller says
(`PANMConfig.given_starts`, with `PANMSeq2SeqConfig.pointer_start_after`: after a separator
id), pointers that read their start slots at step 1 (`PANMConfig.read_start`) and one move rule
for all pointers (`PANMConfig.shared_moves`).

The property-based contract (padding, batch invariance, seeds, save/load) covers read_start in
test_panm_properties.py; this file checks where the pointers start and what step 1 reads, on
either padding side and alone or in a batch, the checks of bad starts, and the model path
(training and cached decoding) on binary_addition.
"""

import random

import pytest
import torch
from test_output_initial_read import STEPS, batch, build

from panm import PANMConfig
from panm.models import build_model
from panm.tasks import get_task
from panm.tasks.base import collate

ROWS = ((0, 0, 5), (1, 3, 7), (2, 1, 4))  # (row, first valid slot, end) of `batch`'s rows
STARTS = torch.tensor([[2], [5], [3]])  # a valid slot of each row for pointer 1


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
@pytest.mark.parametrize("tokens", [False, True], ids=["memory", "token memory"])
def test_step_1_reads_the_given_start_and_pointer_0_the_first_slot(training, tokens):
    panm = build(given_starts=1, read_start=True).train(training)
    memory, mask, memory_tokens, _ = batch(tokens)
    torch.manual_seed(3)
    out = panm(memory, mask, num_steps=STEPS, memory_tokens=memory_tokens, start_slots=STARTS)
    for row, first, _ in ROWS:
        w = out.mode1_weights[row, 0]  # (G, L)
        slots = [first, int(STARTS[row, 0])]
        assert w.argmax(-1).tolist() == slots
        torch.testing.assert_close(w.amax(-1), torch.ones(2, dtype=w.dtype), rtol=0, atol=0)
        torch.testing.assert_close(out.pointers[row, 0], out.addresses[row, slots], rtol=0, atol=0)


def test_each_sample_gets_its_result_alone():
    panm = build(given_starts=1, read_start=True, decoy_slots=0).eval()
    memory, mask, _, _ = batch(False)
    together = panm(memory, mask, num_steps=STEPS, start_slots=STARTS)
    for row, first, end in ROWS:
        alone = panm(
            memory[row : row + 1, first:end],
            mask[row : row + 1, first:end],
            num_steps=STEPS,
            start_slots=STARTS[row : row + 1] - first,
        )
        torch.testing.assert_close(alone.logits[0], together.logits[row])
        torch.testing.assert_close(
            alone.mode1_weights[0], together.mode1_weights[row, ..., first:end]
        )


@pytest.mark.parametrize("given", [0, 1], ids=["ends", "given start"])
def test_read_start_delays_the_walk_by_one_step(given):
    """Step t + 1's weights and pointers with read_start are step t's without it (whose first
    move leaves the start); step 1's are the start slots (pointer 0 on the first valid slot,
    pointer 1 on the last or on the given slot)."""
    on = build(read_start=True, given_starts=given).eval()
    off = build(given_starts=given).eval()
    memory, mask, _, _ = batch(False)
    starts = STARTS if given else None
    out_on = on(memory, mask, num_steps=STEPS, start_slots=starts)
    out_off = off(memory, mask, num_steps=STEPS, start_slots=starts)
    for field in ("mode1_weights", "pointers"):
        torch.testing.assert_close(
            getattr(out_on, field)[:, 1:], getattr(out_off, field)[:, :-1], rtol=0, atol=0
        )
    for row, first, end in ROWS:
        second = int(STARTS[row, 0]) if given else end - 1
        assert out_on.mode1_weights[row, 0].argmax(-1).tolist() == [first, second]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
def test_shared_moves_walk_two_pointers_on_one_start_alike(training):
    """With one rule, two pointers given the same start (the first valid slot) take the same
    walk; with a rule each they do not (their weights are drawn apart)."""
    memory, mask, _, _ = batch(False)
    first = torch.tensor([[0], [3], [1]])
    for shared in (True, False):
        panm = build(given_starts=1, shared_moves=shared, decoy_slots=0).train(training)
        torch.manual_seed(3)
        w = panm(memory, mask, num_steps=STEPS, start_slots=first).mode1_weights
        assert torch.equal(w[:, :, 0], w[:, :, 1]) == shared


def test_shared_moves_keep_one_set_of_pointer_weights_and_train_it():
    """The GRU's and the query map's weights have one group instead of G = 2."""
    shared, apart = build(shared_moves=True), build()
    grouped = [
        n
        for n, _ in shared.pointer_unit.named_parameters()
        if n.startswith(("cell", "attention.query"))
    ]
    assert len(grouped) == 6  # input map, hidden map, query map: weight and bias each
    for name in grouped:
        assert shared.pointer_unit.get_parameter(name).shape[0] == 1
        assert apart.pointer_unit.get_parameter(name).shape[0] == 2
    shared.train()
    out = shared(*batch(False)[:2], num_steps=STEPS)
    out.logits.square().sum().backward()
    for name in grouped:
        grad = shared.pointer_unit.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("given", "starts", "message"),
    [
        (1, None, r"given_starts=1 needs start_slots \(B, 1\)"),
        (0, STARTS, "start_slots was given but given_starts=0"),
        (1, STARTS.int(), "start_slots must be long"),
        (1, STARTS[:2], r"start_slots must be long \(3, 1\)"),
        (1, torch.tensor([[2], [1], [3]]), r"start_slots of batch rows \[1\] are not valid"),
        (1, torch.tensor([[2], [5], [9]]), r"start_slots of batch rows \[2\] are not valid"),
    ],
)
def test_bad_start_slots_are_refused(given, starts, message):
    panm = build(given_starts=given)
    memory, mask, _, _ = batch(False)
    with pytest.raises(ValueError, match=message):
        panm(memory, mask, num_steps=STEPS, start_slots=starts)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"given_starts": 3}, r"given_starts must be in 0..num_mode1 \(2\)"),
        ({"given_starts": -1}, "given_starts must be in 0..num_mode1"),
        (
            {"given_starts": 1, "pointer_restart": 1, "address_similarity": "bitwise"},
            "cannot be combined",
        ),
        ({"read_start": "yes"}, "read_start must be true or false"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        PANMConfig(**options)


SMALL = {"embed_dim": 16, "panm.hidden_dim": 16, "panm.pointer_dim": 8, "panm.key_dim": 8}
ADDITION = {
    "encoder": "none",
    "memory_source": "embedding",
    "pointer_start_after": 6,  # "+"
    "panm.given_starts": 1,
    "panm.read_start": True,
    "panm.address_similarity": "bitwise",
}


def addition_batch(count: int = 12):
    task = get_task("binary_addition")
    rng = random.Random(0)
    examples = [task.sample(rng, rng.randint(3, 12)) for _ in range(count)]
    return task, examples, collate([task.encode(e) for e in examples])


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
def test_the_model_starts_pointer_1_after_plus(training):
    task, examples, data = addition_batch()
    torch.manual_seed(0)
    model = build_model("panm", task, {**SMALL, **ADDITION}).train(training)
    out = model.trace(data.src, data.src_mask, num_steps=data.tgt.shape[1])
    for row, example in enumerate(examples):
        after_plus = example["seq"].index(2) + 1
        assert out.mode1_weights[row, 0].argmax(-1).tolist() == [0, after_plus]
    out.logits.sum().backward()  # the path trains


def test_cached_decoding_takes_the_given_starts():
    task, _, data = addition_batch()
    torch.manual_seed(0)
    model = build_model(
        "panm", task, {**SMALL, **ADDITION, "decoder_input": "previous_token"}
    ).eval()
    steps = data.tgt.shape[1]
    tgt_in = torch.cat([torch.zeros_like(data.tgt[:, :1]), data.tgt[:, :-1]], dim=1)
    with torch.no_grad():
        full = model(data.src, data.src_mask, tgt_in=tgt_in)
        step = model.start_decoding(data.src, data.src_mask, steps)
        stepped = torch.stack([step(tgt_in[:, t : t + 1]) for t in range(steps)], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)


def test_model_settings_are_checked():
    task, _, data = addition_batch()
    with pytest.raises(ValueError, match="go together"):
        build_model("panm", task, {**SMALL, **ADDITION, "panm.given_starts": 0})
    with pytest.raises(ValueError, match=r"an input id in 1\.\.6, got 7"):
        build_model("panm", task, {**SMALL, **ADDITION, "pointer_start_after": 7})
    model = build_model("panm", task, {**SMALL, **ADDITION, "pointer_start_after": 2})
    with pytest.raises(ValueError, match=r"input id 2 .* is missing in rows"):
        model(data.src, data.src_mask, num_steps=3)
