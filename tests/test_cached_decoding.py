"""Cached greedy decoding (`Seq2SeqModel.start_decoding`) against uncached decoding.

Uncached decoding reruns the whole model over all tokens at every step; cached decoding
encodes once and runs each step alone. Both must give the same tokens, and every cached step
the logits of the full forward pass on the tokens so far.
"""

import pytest
import torch

from panm.backbones.positions import POSITION_KINDS, RANDOMIZABLE_KINDS
from panm.models import build_model
from panm.tasks import get_task
from panm.tasks.base import collate

STEPS = 14  # a little beyond the longest target of the batch below
SMALL_TRANSFORMER = {"d_model": 16, "num_heads": 2, "ff_dim": 16, "dropout": 0.0}
SMALL_PANM = {"embed_dim": 16, "panm.hidden_dim": 16, "panm.pointer_dim": 8, "panm.key_dim": 8,
              "transformer_heads": 2, "transformer_ff_dim": 16, "encoder_layers": 1,
              "decoder_layers": 2, "dropout": 0.0}  # fmt: skip
PANM_VARIANTS = [
    {"encoder": "transformer", "decoder": "transformer", "transformer_position": position}
    for position in ("relative", "rope", "sinusoidal")
] + [
    {"encoder": "gru"},
    {"encoder": "lstm", "panm.controller_init": "given", "panm.initial_read": True},
    {"encoder": "transformer", "decoder": "transformer", "panm.mode2_exclusion": True,
     "panm.pointer_window": 2, "panm.eval_pointers": "hard"},
    {"encoder": "gru", "panm.mode2_selection": "hard", "panm.mode2_exclusion": True},
    # token-embedding memory: PANM maps its reads on the embedding table (factored_reads)
    {"encoder": "none", "memory_source": "embedding", "panm.initial_read": True},
    {"encoder": "none", "memory_source": "embedding", "decoder": "transformer"},
    {"encoder": "none", "memory_source": "embedding", "panm.output_initial_read": True},
    {"encoder": "none", "memory_source": "embedding", "factored_reads": False,
     "panm.output_initial_read": True, "panm.initial_read": True},
    {"encoder": "gru", "panm.output_initial_read": True},
    {"encoder": "none", "memory_source": "embedding", "panm.output_previous_read": True,
     "panm.output_initial_read": True, "panm.initial_read": False},
    {"encoder": "gru", "panm.output_previous_read": True},
    {"encoder": "none", "memory_source": "embedding", "panm.mode2_keys": "previous_slot",
     "panm.mode2_selection": "hard", "panm.mode2_decoys": False},
    {"encoder": "transformer", "decoder": "transformer", "transformer_position": "t5",
     "transformer_shared_layers": True},
    {"encoder": "transformer", "decoder": "transformer", "transformer_position": "rope",
     "panm.output_input": True},
    {"encoder": "none", "memory_source": "embedding", "decoder": "transformer",
     "panm.output_input": True, "panm.output_previous_read": True},
]  # fmt: skip


@pytest.fixture(scope="module")
def scan():
    task = get_task("scan", split="cutoff-44")
    examples = [e for e in task.examples("train") if len(e["target"]) < STEPS][::97][:24]
    batch = collate([task.encode(e) for e in examples])
    assert batch.tgt.shape[1] <= STEPS
    return task, batch


def transformer(task, position, seed=0, **changes):
    torch.manual_seed(seed)
    config = {**SMALL_TRANSFORMER, "position": position, **changes}
    return build_model("transformer", task, config).eval()


def panm(task, variant, seed=0):
    torch.manual_seed(seed)
    return build_model("panm", task, {**SMALL_PANM, **variant}).eval()


def models(task):
    yield from (transformer(task, position) for position in POSITION_KINDS)
    yield from (panm(task, variant) for variant in PANM_VARIANTS)


def assert_cached_equals_uncached(model, task, batch, device="cpu"):
    model, batch = model.to(device), batch.to(device)
    src, mask = batch.src, batch.src_mask
    uncached = model.generate(src, mask, STEPS, bos_id=task.bos_id, cache=False)
    cached = model.generate(src, mask, STEPS, bos_id=task.bos_id)
    assert torch.equal(cached, uncached)
    assert len(cached.unique()) > 1, "the test should decode more than one repeated token"
    # Each cached step's logits are those of the full pass over the tokens so far.
    tgt_in = torch.cat([torch.full_like(cached[:, :1], task.bos_id), cached[:, :-1]], dim=1)
    with torch.no_grad():
        full = model(src, mask, tgt_in=tgt_in)
        step = model.start_decoding(src, mask, STEPS)
        stepped = torch.stack([step(tgt_in[:, t : t + 1]) for t in range(STEPS)], dim=1)
    tolerance = 1e-5 if device == "cpu" else 1e-4  # GPU kernels differ by batch shape
    torch.testing.assert_close(stepped, full, atol=tolerance, rtol=tolerance)
    # Oracle-length decoding: the same tokens with EOS held back to each target's length.
    min_steps = (batch.tgt != task.eos_id).sum(dim=1)
    args = dict(bos_id=task.bos_id, eos_id=task.eos_id, min_steps=min_steps)
    oracle = model.generate(src, mask, STEPS, **args)
    assert torch.equal(oracle, model.generate(src, mask, STEPS, **args, cache=False))
    early = torch.arange(STEPS, device=device)[None, :] < min_steps[:, None]
    assert not (oracle[early] == task.eos_id).any()


@pytest.mark.parametrize("shared_layers", [False, True])
@pytest.mark.parametrize("position", POSITION_KINDS)
def test_transformer_cached_decoding_equals_uncached(scan, position, shared_layers):
    task, batch = scan
    # another seed for the shared stacks: with seed 0 some decode a single repeated token
    model = transformer(task, position, seed=3 if shared_layers else 0, shared_layers=shared_layers)
    with torch.no_grad():  # make EOS a frequent choice, so that oracle decoding delays it
        model.head.bias[task.eos_id] += 1.0
    assert_cached_equals_uncached(model, task, batch)


@pytest.mark.parametrize("variant", PANM_VARIANTS, ids=str)
def test_panm_cached_decoding_equals_uncached(scan, variant):
    task, batch = scan
    assert_cached_equals_uncached(panm(task, variant), task, batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(
    "variant", [*PANM_VARIANTS[:1], None], ids=["transformer+panm", "transformer"]
)
def test_cached_decoding_on_the_gpu_equals_uncached(scan, variant):
    task, batch = scan
    model = transformer(task, "relative") if variant is None else panm(task, variant)
    assert_cached_equals_uncached(model, task, batch, device="cuda")


@pytest.mark.parametrize("position", RANDOMIZABLE_KINDS)
def test_randomized_positions_are_one_draw_for_the_whole_cached_decoding(scan, position):
    """Cached decoding draws the positions of all steps once, as one forward pass over them
    does: its tokens are that pass's argmax from the same random state, which they leave as
    that pass does."""
    task, batch = scan
    model = transformer(task, position, random_positions=64)
    torch.manual_seed(1)
    tokens = model.generate(batch.src, batch.src_mask, STEPS, bos_id=task.bos_id)
    after = torch.rand(1)
    torch.manual_seed(1)
    tgt_in = torch.cat([torch.full_like(tokens[:, :1], task.bos_id), tokens[:, :-1]], dim=1)
    with torch.no_grad():
        forced = model(batch.src, batch.src_mask, tgt_in=tgt_in)
    assert torch.equal(forced.argmax(-1), tokens)
    assert torch.equal(torch.rand(1), after)


def test_a_cached_step_runs_the_new_token_only(scan):
    """The encoder runs once per generate call and every decoder layer sees one step per call,
    so a step's cost does not grow with the steps before it (beyond attending to them)."""
    task, batch = scan
    models = (transformer(task, "relative"), transformer(task, "t5", shared_layers=True))
    for model in (*models, panm(task, PANM_VARIANTS[0])):
        encoder_calls: list[int] = []
        layer_lengths: list[int] = []
        model.encoder.register_forward_hook(lambda *_, calls=encoder_calls: calls.append(1))
        for layer in model.decoder.layers:
            layer.register_forward_hook(
                lambda m, args, out, lengths=layer_lengths: lengths.append(args[0].shape[1])
            )
        model.generate(batch.src, batch.src_mask, STEPS, bos_id=task.bos_id)
        assert len(encoder_calls) == 1
        assert layer_lengths == [1] * (STEPS * model.decoder.depth)


def test_stepping_past_the_started_steps_is_an_error(scan):
    task, batch = scan
    bos = torch.full_like(batch.src[:, :1, 0], task.bos_id)
    for model, message in (
        (transformer(task, "rope"), "cache was started for 2 steps, not 3"),
        (panm(task, PANM_VARIANTS[3]), "the plan has 2 steps, not 3"),
    ):
        with torch.no_grad():
            step = model.start_decoding(batch.src, batch.src_mask, 2)
            step(bos), step(bos)
            with pytest.raises(ValueError, match=message):
                step(bos)
