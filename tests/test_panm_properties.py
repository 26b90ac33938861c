"""Property-based tests of `panm.PANM`'s contract over random shapes, masks, steps, settings.

For any batch of sequences padded on the left or the right, any number of steps and any
setting: outputs are finite, padded slots get weight exactly 0, each sample's result is the one
it gets alone, a seed fixes the result, and a saved and loaded module computes the same.
Examples are drawn deterministically (derandomize) so the suite cannot flake between runs.
"""

import tempfile

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from panm import PANM, PANMConfig

SETTINGS = [
    {},
    {"address_similarity": "cosine", "controller_init": "memory_mean"},
    {"address_similarity": "bitwise", "pointer_window": 2},
    {"pointer_window": 3, "pointer_inputs": "latest", "initial_read": True},
    {"eval_pointers": "hard", "decoy_slots": 3, "base_sampling": False},
    {"mode2_exclusion": True},
    {"mode2_exclusion": True, "mode2_selection": "hard", "mode2_tie_margin": 0.5},
    {"mode2_query": "constant", "mode2_selection": "hard", "mode2_exclusion": True},
    {"decoy_slots": 4, "mode2_decoys": False, "eval_base": "random"},
    {"output_initial_read": True, "decoy_slots": 2, "controller_init": "memory_mean"},
    {"output_previous_read": True, "output_initial_read": True, "initial_read": False},
    {"address_similarity": "bitwise", "pointer_restart": 1, "decoy_slots": 2},
    {"address_similarity": "bitwise", "pointer_restart": 3, "pointer_window": 3,
     "pointer_inputs": "latest", "eval_pointers": "hard"},
    {"read_start": True, "decoy_slots": 2, "eval_pointers": "hard", "shared_moves": True},
    {"read_start": True, "address_similarity": "bitwise", "pointer_window": 3,
     "pointer_inputs": "latest", "output_previous_read": True},
]  # fmt: skip
SMALL = dict(memory_dim=6, output_dim=5, hidden_dim=8, pointer_dim=6, key_dim=6)
FAST = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def cases(draw):
    """A PANMConfig and a padded batch: (config, memory, mask, steps, inputs)."""
    options = dict(draw(st.sampled_from(SETTINGS)))
    input_dim = draw(st.sampled_from([0, 3]))
    config = PANMConfig(
        **SMALL,
        input_dim=input_dim,
        address_bits=draw(st.integers(4, 7)),
        num_mode1=draw(st.integers(1, 3)),
        num_mode2=draw(st.integers(1 if options.get("mode2_exclusion") else 0, 2)),
        **options,
    )
    lengths = draw(st.lists(st.integers(1, 8), min_size=1, max_size=4))
    width = max(lengths) + draw(st.integers(0, 3))
    left = draw(st.lists(st.booleans(), min_size=len(lengths), max_size=len(lengths)))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    memory = torch.randn(len(lengths), width, 6, generator=generator)
    positions = torch.arange(width)
    mask = torch.stack(
        [
            positions >= width - n if on_left else positions < n
            for n, on_left in zip(lengths, left, strict=True)
        ]
    )
    memory[~mask] = float("nan")  # padding content must never leak
    steps = draw(st.integers(1, 6))
    inputs = torch.randn(len(lengths), steps, 3, generator=generator) if input_dim else None
    return config, memory, mask, steps, inputs


def run(panm: PANM, memory, mask, steps, inputs, **kwargs):
    if inputs is None:
        return panm(memory, mask, num_steps=steps, **kwargs)
    return panm(memory, mask, inputs=inputs, **kwargs)


def build(config: PANMConfig, seed: int = 0) -> PANM:
    torch.manual_seed(seed)
    return PANM(config)


def padded_weights_are_zero(out, mask) -> bool:
    invalid = ~mask[:, None, None, :]
    return bool(
        (out.mode1_weights.masked_select(invalid) == 0).all()
        and (out.mode2_weights.masked_select(invalid) == 0).all()
    )


@FAST
@given(cases(), st.booleans())
def test_outputs_finite_and_padding_weightless(case, training):
    config, memory, mask, steps, inputs = case
    panm = build(config).train(training)
    with torch.no_grad():
        out = run(panm, memory, mask, steps, inputs)
    batch = len(mask)
    assert out.logits.shape == (batch, steps, config.output_dim)
    assert out.mode1_weights.shape == (batch, steps, config.num_mode1, mask.shape[1])
    for value in (out.logits, out.pointers, out.mode2_pointers, out.controller_state):
        assert torch.isfinite(value).all()
    assert padded_weights_are_zero(out, mask)
    totals = out.mode1_weights.sum(-1)
    if not (training and config.decoy_slots):  # decoys take part of the weight in training
        torch.testing.assert_close(totals, torch.ones_like(totals))


@FAST
@given(cases())
def test_each_sample_gets_its_result_alone(case):
    config, memory, mask, steps, inputs = case
    panm = build(config).eval()
    base = torch.randint(0, 2**config.address_bits, (len(mask),))
    with torch.no_grad():
        out = run(panm, memory, mask, steps, inputs, base_address=base)
        for i in range(len(mask)):
            valid = mask[i]
            alone = run(
                panm,
                memory[i : i + 1, valid],
                mask[i : i + 1, valid],
                steps,
                None if inputs is None else inputs[i : i + 1],
                base_address=base[i : i + 1],
            )
            close = dict(atol=1e-5, rtol=0)
            torch.testing.assert_close(out.logits[i], alone.logits[0], **close)
            torch.testing.assert_close(out.pointers[i], alone.pointers[0], **close)
            torch.testing.assert_close(out.addresses[i, valid], alone.addresses[0], **close)
            torch.testing.assert_close(
                out.mode1_weights[i][..., valid], alone.mode1_weights[0], **close
            )
            torch.testing.assert_close(
                out.mode2_weights[i][..., valid], alone.mode2_weights[0], **close
            )


@FAST
@given(cases(), st.booleans())
def test_a_seed_fixes_the_result(case, training):
    config, memory, mask, steps, inputs = case
    results = []
    for _ in range(2):
        panm = build(config, seed=3).train(training)
        torch.manual_seed(7)  # bases, decoys, random evaluation bases
        results.append(run(panm, memory, mask, steps, inputs))
    for name in ("logits", "pointers", "mode1_weights", "mode2_weights", "addresses"):
        assert torch.equal(getattr(results[0], name), getattr(results[1], name)), name


@settings(max_examples=10, deadline=None, derandomize=True)
@given(cases())
def test_save_load_identity(case):
    config, memory, mask, steps, inputs = case
    panm = build(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        panm.save_pretrained(folder)
        loaded = PANM.from_pretrained(folder).eval()
    assert loaded.config == panm.config
    torch.manual_seed(0)
    expected = run(panm, memory, mask, steps, inputs)
    torch.manual_seed(0)
    got = run(loaded, memory, mask, steps, inputs)
    assert torch.equal(got.logits, expected.logits)
    assert torch.equal(got.pointers, expected.pointers)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(cases(), st.booleans())
def test_bfloat16_outputs_finite_and_padding_weightless(case, training):
    config, memory, mask, steps, inputs = case
    panm = build(config).to(torch.bfloat16).train(training)
    with torch.no_grad():
        out = run(
            panm,
            memory.bfloat16(),
            mask,
            steps,
            None if inputs is None else inputs.bfloat16(),
        )
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.logits.float()).all()
    assert padded_weights_are_zero(out, mask)
