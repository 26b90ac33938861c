"""The complete PANM model and the model registry."""

import random

import pytest
import torch

from panm import PANMSeq2Seq, PANMSeq2SeqConfig
from panm.backbones.suffix_or import SuffixOrEncoder
from panm.memory.panm import PANMConfig
from panm.models import MODEL_NAMES, build_model, load_model, model_config
from panm.models.registry import LM_MODEL_NAMES, with_overrides
from panm.pretrained import config_from_dict, config_to_dict
from panm.tasks import get_task
from panm.tasks.base import collate

# The LM models are tested in tests/test_lm.py on tiny random LMs.
SCRATCH_MODELS = [n for n in MODEL_NAMES if n not in LM_MODEL_NAMES]


SMALL = {"embed_dim": 16, "panm.hidden_dim": 16, "panm.pointer_dim": 8, "panm.key_dim": 8,
         "transformer_heads": 2, "transformer_ff_dim": 16, "encoder_layers": 1,
         "decoder_layers": 1}  # fmt: skip
VARIANTS = [
    {"encoder": "gru"},
    {"encoder": "lstm", "memory_source": "sum"},
    {"encoder": "gru", "memory_source": "sum", "encoder_bidirectional": False},
    {"encoder": "suffix_or", "memory_source": "sum"},
    {"encoder": "lstm", "panm.controller_init": "given"},
    {"encoder": "transformer", "transformer_position": "rope"},
    {"encoder": "none", "memory_source": "embedding", "panm.address_similarity": "bitwise"},
    {"encoder": "transformer", "decoder": "transformer"},
]


def small_panm(task, **changes):
    return build_model("panm", task, {**SMALL, "dropout": 0.0, **changes})


def batch_of(task, lengths, seed=0):
    rng = random.Random(seed)
    return collate([task.encode(task.sample(rng, n)) for n in lengths])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("task_name", ["copy", "priority_sort", "scan"])
def test_panm_model_variants(variant, task_name):
    task = get_task(task_name)
    model = small_panm(task, **variant)
    batch = batch_of(task, [3, 5, 2])
    if task.bos_id is None:
        logits = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    else:
        logits = model(batch.src, batch.src_mask, tgt_in=batch.tgt)
    assert logits.shape == (3, batch.tgt.shape[1], task.output_vocab_size)
    logits.square().sum().backward()
    unused = {"embedding.tables.0.weight"}  # padding rows only get no gradient
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        if name not in unused:
            assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_panm_model_batch_invariance(variant):
    task = get_task("reverse")
    model = small_panm(task, **variant).eval()
    lengths = [6, 2, 9]
    batch = batch_of(task, lengths)
    together = model(batch.src, batch.src_mask, num_steps=9)
    for i, n in enumerate(lengths):
        alone = model(batch.src[i : i + 1, :n], batch.src_mask[i : i + 1, :n], num_steps=9)
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=0)


def test_forward_only_encoder_slots_do_not_see_later_slots():
    task = get_task("copy")
    torch.manual_seed(0)
    model = small_panm(task, encoder="gru", memory_source="sum", encoder_bidirectional=False)
    batch = batch_of(task, [9])
    changed = batch.src.clone()
    changed[0, 5:9] = changed[0, 5:9] % 10 + 4  # other symbols after slot 4
    memory = [
        model.encoder(model.embedding(src), batch.src_mask)[0] for src in (batch.src, changed)
    ]
    torch.testing.assert_close(memory[0][:, :5], memory[1][:, :5], rtol=0, atol=0)
    assert not torch.allclose(memory[0][:, 5:9], memory[1][:, 5:9])
    with pytest.raises(ValueError, match="encoder_bidirectional=False needs a 'gru' or 'lstm'"):
        small_panm(task, encoder="transformer", encoder_bidirectional=False)


def test_suffix_or_flags_are_an_or_over_the_slots_ahead_up_to_a_reset():
    torch.manual_seed(0)
    encoder = SuffixOrEncoder(dim=6, flags=3)
    x, mask = torch.randn(2, 7, 6), torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    set_, keep = torch.sigmoid(encoder.marks(x)).detach().chunk(2, dim=-1)
    flags = encoder.flags(x, mask).detach()
    for row, n in enumerate([7, 4]):  # the definition, slot by slot
        for i in range(n):
            for j in range(3):
                expected = max(
                    float(set_[row, m, j] * keep[row, i:m, j].prod()) for m in range(i, n)
                )
                assert abs(float(flags[row, i, j]) - expected) < 1e-5
    assert (flags[1, 4:] == 0).all()
    alone = encoder(x[1:, :4], mask[1:, :4])  # padding does not change a row
    torch.testing.assert_close(encoder(x, mask)[1, :4], alone[0], rtol=0, atol=1e-6)
    long = torch.randn(1, 3000, 6)  # finite at any length, and the gradient too
    flags = encoder.flags(long, torch.ones(1, 3000, dtype=torch.bool))
    flags.sum().backward()
    assert torch.isfinite(flags).all() and torch.isfinite(encoder.marks.weight.grad).all()
    with pytest.raises(ValueError, match="needs at least one flag, got 0"):
        small_panm(get_task("copy"), encoder="suffix_or", memory_source="sum", suffix_flags=0)


def test_shared_transformer_layers_need_a_transformer_stack():
    task = get_task("copy")
    with pytest.raises(ValueError, match="transformer_shared_layers needs"):
        small_panm(task, encoder="gru", transformer_shared_layers=True)
    model = small_panm(task, encoder="transformer", transformer_shared_layers=True)
    assert len(model.encoder.layers) == 1 and model.encoder.depth == model.config.encoder_layers


def test_retired_fields_load_at_their_kept_value_and_fail_otherwise():
    """A saved config may still hold a removed field: at the value that behaves as today it is
    dropped, at any other the error names the last commit that had the field."""
    saved = config_to_dict(PANMSeq2SeqConfig())
    loaded = config_from_dict(PANMSeq2SeqConfig, {**saved, "decoder_logits": False})
    assert loaded == PANMSeq2SeqConfig()
    with pytest.raises(ValueError, match="decoder_logits was removed after commit 5204d49"):
        config_from_dict(PANMSeq2SeqConfig, {**saved, "decoder_logits": True})
    loaded = config_from_dict(PANMSeq2SeqConfig, {**saved, "encoder_reverse": False})
    assert loaded == PANMSeq2SeqConfig()
    panm = {**saved["panm"], "pointer_start": "inside"}
    assert config_from_dict(PANMSeq2SeqConfig, {**saved, "panm": panm}) == PANMSeq2SeqConfig()
    with pytest.raises(ValueError, match="controller_reads was removed after commit 60b0d94"):
        config_from_dict(PANMConfig, {**saved["panm"], "controller_reads": False})


def test_registry_save_load_round_trip(tmp_path):
    task = get_task("mix")
    for name in SCRATCH_MODELS:
        torch.manual_seed(0)
        model = build_model(name, task).eval()
        model.save_pretrained(tmp_path / name)
        loaded = load_model(tmp_path / name).eval()
        assert type(loaded) is type(model) and loaded.config == model.config
        batch = batch_of(task, [4, 7])
        torch.testing.assert_close(
            loaded(batch.src, batch.src_mask, num_steps=7),
            model(batch.src, batch.src_mask, num_steps=7),
            rtol=0,
            atol=0,
        )


def test_load_model_puts_every_tensor_on_map_location(tmp_path):
    # The device of the loaded weights alone is not enough: the model must be moved (the CUDA
    # path once loaded CUDA weights into a model left on the CPU). "meta" stands in for a GPU.
    build_model("panm", get_task("copy")).save_pretrained(tmp_path)
    model = load_model(tmp_path, map_location="meta")
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)


def test_registry_errors(tmp_path):
    task = get_task("copy")
    with pytest.raises(ValueError, match="unknown model 'gpt'; choose from: panm"):
        build_model("gpt", task)
    with pytest.raises(ValueError, match=r"unknown setting 'panm\.bits'"):
        build_model("panm", task, {"panm.bits": 3})
    with pytest.raises(FileNotFoundError, match="not a saved model"):
        load_model(tmp_path)


def test_overrides_reach_nested_config():
    config = with_overrides(PANMSeq2SeqConfig(), {"embed_dim": 32, "panm.num_mode1": 3})
    assert config.embed_dim == 32 and config.panm.num_mode1 == 3
    assert config.panm.memory_dim == 32  # derived from embed_dim


def test_model_config_follows_the_task():
    scan = model_config("panm", get_task("scan"))
    assert scan.decoder_input == "previous_token" and scan.panm.input_dim == scan.embed_dim
    copy = model_config("panm", get_task("copy"))
    assert copy.decoder_input == "none" and copy.panm.input_dim == 0
    assert model_config("pointer", get_task("copy")).copy_map == get_task("copy").copy_map()


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(encoder="cnn"), "encoder must be one of"),
        (dict(memory_source="both"), "memory_source must be one of"),
        (dict(encoder="none"), "needs memory_source='embedding'"),
        (dict(memory_source="embedding"), "leaves the encoder unused"),
        (dict(decoder="lstm"), "decoder must be one of"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        PANMSeq2SeqConfig(**changes)


def test_trace_exposes_pointers():
    task = get_task("copy")
    model = small_panm(task).eval()
    batch = batch_of(task, [4])
    trace = model.trace(batch.src, batch.src_mask, num_steps=4)
    assert trace.mode1_weights.shape == (1, 4, 2, 4)
    assert isinstance(model, PANMSeq2Seq)


def test_oracle_length_decoding_delays_eos_only():
    task = get_task("scan", split="cutoff-44")
    model = build_model("transformer", task, {"d_model": 8, "num_heads": 2, "ff_dim": 8}).eval()
    with torch.no_grad():
        model.head.bias[task.eos_id] = 100.0  # a model that always wants to stop
    batch = collate([task.encode(e) for e in task.examples("test")[:2]])
    free = model.generate(batch.src, batch.src_mask, 6, bos_id=task.bos_id)
    assert (free == task.eos_id).all()
    oracle = model.generate(
        batch.src,
        batch.src_mask,
        6,
        bos_id=task.bos_id,
        eos_id=task.eos_id,
        min_steps=torch.tensor([3, 0]),
    )
    assert (oracle[0, :3] != task.eos_id).all() and (oracle[0, 3:] == task.eos_id).all()
    assert (oracle[1] == task.eos_id).all()
    with pytest.raises(ValueError, match="both eos_id and min_steps"):
        model.generate(batch.src, batch.src_mask, 6, bos_id=task.bos_id, eos_id=task.eos_id)
    copy = get_task("copy")
    no_input = small_panm(copy)  # decodes without previous tokens: no EOS to delay
    batch = batch_of(copy, [3])
    with pytest.raises(ValueError, match="needs previous_token decoding"):
        no_input.generate(batch.src, batch.src_mask, 3, eos_id=0, min_steps=torch.tensor([2]))


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("decoder", ["none", "transformer"])
def test_random_eval_base_is_one_draw_per_sequence_for_the_whole_decoding(decoder, cache):
    """Uncached generation calls the model once per step and every call must use the same
    random bases; cached generation plans PANM once. Either way the tokens equal one
    teacher-forced pass from the same random state, which they leave as that pass does."""
    task = get_task("scan", split="cutoff-44")
    encoder = "transformer" if decoder == "transformer" else "gru"
    model = small_panm(task, encoder=encoder, decoder=decoder, **{"panm.eval_base": "random"})
    model.eval()
    batch = collate([task.encode(e) for e in task.examples("test")[:16]])
    bases = []
    model.memory.register_forward_hook(lambda module, args, out: bases.append(out.addresses[:, 0]))
    torch.manual_seed(0)
    tokens = model.generate(batch.src, batch.src_mask, 8, bos_id=task.bos_id, cache=cache)
    if not cache:
        assert len(bases) == 8
        for step_bases in bases[1:]:
            assert torch.equal(step_bases, bases[0])
    after_generate = torch.rand(1)
    torch.manual_seed(0)
    tgt_in = torch.cat([torch.full_like(tokens[:, :1], task.bos_id), tokens[:, :-1]], dim=1)
    with torch.no_grad():
        forced = model(batch.src, batch.src_mask, tgt_in=tgt_in)
    assert len({tuple(row.tolist()) for row in bases[-1]}) > 8  # bases differ per sequence
    assert torch.equal(forced.argmax(-1), tokens)
    assert torch.equal(torch.rand(1), after_generate)  # the state advanced as by one pass
