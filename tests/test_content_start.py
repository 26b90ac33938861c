"""`PANMConfig.content_starts` (pointers that start where a content matches) and
`PANMConfig.read_start` (pointers read their start slots at step 1, then move).

Padding sides, batch invariance, seeds and save/load with the options on are in
test_panm_properties.py; this file checks where the pointers start, what step 1 reads, the
gradient of the content choice, and the config checks.
"""

import pytest
import torch
from test_output_initial_read import STEPS, batch, build, run

from panm import PANMConfig

ROWS = ((0, 0, 5), (1, 3, 7), (2, 1, 4))  # (row, first valid slot, end) of `batch`'s rows


def with_marker_query(panm, feature: int = 0):
    """Content start keyed on memory feature `feature` of the slot before: the pointer starts
    after the slot where that feature is largest."""
    with torch.no_grad():
        panm.content_start.key.weight.zero_()
        panm.content_start.key.bias.zero_()
        panm.content_start.key.weight[0, feature] = 1.0
        panm.content_start.query.zero_()
        panm.content_start.query[0, 0] = 1.0
    return panm


def marked_batch(marks: dict[int, int]):
    """`batch`'s memory with feature 0 large at slot marks[row] of each row."""
    memory, mask, _, _ = batch(False)
    memory[..., 0] = 0.0
    for row, slot in marks.items():
        memory[row, slot, 0] = 5.0
    return memory, mask


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
def test_the_pointer_starts_after_the_match_and_step_1_reads_it(training):
    """Pointer 1 starts on the slot after the marked one (pointer 0 stays on the first valid
    slot); with read_start, step 1's weights are one-hot on those slots and its pointer
    values are their addresses, in training too (the straight-through weights' value)."""
    options = dict(content_starts=1, read_start=True, address_similarity="bitwise")
    panm = with_marker_query(build(**options)).train(training)
    marks = {0: 2, 1: 4, 2: 1}
    memory, mask = marked_batch(marks)
    torch.manual_seed(3)
    out = panm(memory, mask, num_steps=STEPS)
    for row, first, _ in ROWS:
        w = out.mode1_weights[row, 0]  # (G, L)
        assert w[0].argmax() == first and w[1].argmax() == marks[row] + 1
        torch.testing.assert_close(w.max(-1).values, torch.ones(2, dtype=w.dtype))
        expected = out.addresses[row, [first, marks[row] + 1]]
        torch.testing.assert_close(out.pointers[row, 0], expected, rtol=0, atol=0)


def test_the_first_slot_is_scored_by_zeros_and_padding_is_never_chosen():
    """A query that prefers the key of zeros (the first valid slot's, whose predecessor is
    padding or nothing) starts the pointer on the first valid slot, on either padding side."""
    panm = with_marker_query(build(content_starts=1, read_start=True)).eval()
    with torch.no_grad():
        panm.content_start.query[0, 0] = -1.0  # every other slot's key is positive
    memory, mask, _, _ = batch(False)
    memory[..., 0] = memory[..., 0].abs() + 0.1
    memory[~mask] = float("nan")  # padding content must never be read
    out = panm(memory, mask, num_steps=STEPS)
    for row, first, _ in ROWS:
        assert out.mode1_weights[row, 0, 1].argmax() == first


def test_read_start_delays_the_walk_by_one_step():
    """Step t + 1's weights and pointers with read_start are step t's without it; step 1's
    are the start slots (pointer 0 on the first valid slot, pointer 1 on the last)."""
    on, off = build(read_start=True).eval(), build().eval()
    inputs = batch(False)
    out_on, out_off = run(on, *inputs), run(off, *inputs)
    for field in ("mode1_weights", "pointers"):
        torch.testing.assert_close(
            getattr(out_on, field)[:, 1:], getattr(out_off, field)[:, :-1], rtol=0, atol=0
        )
    for row, first, end in ROWS:
        assert out_on.mode1_weights[row, 0].argmax(-1).tolist() == [first, end - 1]


@pytest.mark.parametrize("tokens", [False, True], ids=["memory", "token memory"])
def test_the_gradient_reaches_the_content_query(tokens):
    panm = build(content_starts=1, read_start=True, decoy_slots=2).train()
    out = run(panm, *batch(tokens))
    out.logits.square().sum().backward()
    for name in ("query", "key.weight"):
        grad = panm.content_start.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_off_by_default_and_no_new_parameters():
    assert not any("content_start" in key for key in build().state_dict())
    keys = build(content_starts=2).state_dict()
    assert keys["content_start.query"].shape == (2, 6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"content_starts": 3}, "content_starts must be in 0..num_mode1"),
        ({"content_starts": -1}, "content_starts must be in 0..num_mode1"),
        (
            {"content_starts": 1, "pointer_restart": 1, "address_similarity": "bitwise"},
            "cannot be combined",
        ),
        ({"read_start": "yes"}, "read_start must be true or false"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        PANMConfig(**options)
