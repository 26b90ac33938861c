"""Baseline models (LSTM, attention, pointer, Transformer) and the Transformer building blocks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from panm.backbones.positions import (
    POSITION_KINDS,
    RANDOMIZABLE_KINDS,
    ALiBi,
    LearnedPositions,
    RelativePositionBias,
    alibi_slopes,
    build_position_encoding,
)
from panm.backbones.transformer import (
    MultiHeadAttention,
    TransformerDecoder,
    TransformerEncoder,
)
from panm.models.attention import AttentionConfig, AttentionSeq2Seq
from panm.models.base import Seq2SeqModel
from panm.models.lstm import LSTMConfig, LSTMSeq2Seq
from panm.models.pointer import PointerConfig, PointerSeq2Seq
from panm.models.transformer import TransformerConfig, TransformerSeq2Seq

VOCAB = (14,)
OUT = 10
# Input ids 0-3 (padding and specials) have no output; ids 4..13 are output tokens 0..9.
COPY_MAP = (-1, -1, -1, -1, *range(10))
MODES = ("none", "previous_token")


def small(name: str, mode: str) -> Seq2SeqModel:
    """A tiny model of kind `name` ("transformer-<position>[-shared]" for Transformers)."""
    common = dict(input_vocab_sizes=VOCAB, output_vocab_size=OUT, decoder_input=mode)
    if name == "lstm":
        return LSTMSeq2Seq(LSTMConfig(**common, hidden_dim=16, num_layers=2, dropout=0.0))
    if name.startswith("attention"):
        _, cell, attention = name.split("-")
        config = AttentionConfig(
            **common, hidden_dim=16, cell=cell, attention=attention, dropout=0.0
        )
        return AttentionSeq2Seq(config)
    if name == "pointer":
        return PointerSeq2Seq(
            PointerConfig(**common, copy_map=COPY_MAP, hidden_dim=16, dropout=0.0)
        )
    position = name.split("-")[1]
    config = TransformerConfig(
        **common,
        d_model=16,
        num_heads=2,
        encoder_layers=2,
        decoder_layers=2,
        ff_dim=32,
        dropout=0.0,
        position=position,
        shared_layers=name.endswith("-shared"),
    )
    return TransformerSeq2Seq(config)


MODELS = (
    "lstm",
    "attention-gru-luong",
    "attention-lstm-bahdanau",
    "pointer",
    *(f"transformer-{p}" for p in POSITION_KINDS),
    "transformer-t5-shared",
)


def decode_args(mode: str, batch: int, steps: int, seed: int = 0) -> dict:
    if mode == "none":
        return {"num_steps": steps}
    gen = torch.Generator().manual_seed(seed)
    return {"tgt_in": torch.randint(0, OUT, (batch, steps), generator=gen)}


def random_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, max_len, 1) with random ids everywhere (padding included), mask (B, max_len)."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(1, VOCAB[0], (len(lengths), max(lengths), 1), generator=gen)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return src, mask


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name: str, mode: str) -> None:
    model = small(name, mode)
    src, mask = random_batch([5, 3, 4])
    logits = model(src, mask, **decode_args(mode, batch=3, steps=6))
    assert logits.shape == (3, 6, OUT)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("model_class", "config"),
    [
        (LSTMSeq2Seq, LSTMConfig(input_vocab_sizes=VOCAB)),
        (AttentionSeq2Seq, AttentionConfig(input_vocab_sizes=VOCAB)),
        (PointerSeq2Seq, PointerConfig(input_vocab_sizes=VOCAB, copy_map=COPY_MAP)),
        (TransformerSeq2Seq, TransformerConfig(input_vocab_sizes=VOCAB)),
    ],
)
def test_default_sizes(model_class: type[Seq2SeqModel], config: object) -> None:
    model = model_class(config)  # type: ignore[call-arg]
    assert 100_000 < model.num_parameters() < 1_200_000
    src, mask = random_batch([4, 2])
    assert model(src, mask, num_steps=3).shape == (2, 3, OUT)


@pytest.mark.parametrize("name", MODELS)
def test_exactly_one_decoder_argument(name: str) -> None:
    src, mask = random_batch([3])
    tgt_in = torch.zeros(1, 2, dtype=torch.long)
    model = small(name, "none")
    with pytest.raises(ValueError, match="exactly one"):
        model(src, mask)
    with pytest.raises(ValueError, match="exactly one"):
        model(src, mask, num_steps=2, tgt_in=tgt_in)
    with pytest.raises(ValueError, match="needs num_steps"):
        model(src, mask, tgt_in=tgt_in)
    with pytest.raises(ValueError, match="needs tgt_in"):
        small(name, "previous_token")(src, mask, num_steps=2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_batch_invariance(name: str, mode: str) -> None:
    """A sample alone gives the same logits as inside a padded batch (garbage in its padding)."""
    torch.manual_seed(0)
    model = small(name, mode).eval()
    src, mask = random_batch([6, 3, 2], seed=1)
    args = decode_args(mode, batch=3, steps=4)
    alone_args = {k: v[1:2] if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    batched = model(src, mask, **args)[1]
    alone = model(src[1:2, :3], mask[1:2, :3], **alone_args)[0]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_steps_depend_only_on_earlier_steps(name: str, mode: str) -> None:
    """Decoding fewer steps (or fewer previous tokens) gives a prefix of the same logits."""
    model = small(name, mode).eval()
    src, mask = random_batch([5, 3])
    args = decode_args(mode, batch=2, steps=6)
    short = {k: v[:, :3] if isinstance(v, torch.Tensor) else 3 for k, v in args.items()}
    torch.testing.assert_close(model(src, mask, **short), model(src, mask, **args)[:, :3])


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_transformer_steps_are_told_apart_without_decoder_input(position: str) -> None:
    """Decoder queries differ only by position; every encoding (NoPE too) must separate them."""
    model = small(f"transformer-{position}", "none").eval()
    src = torch.tensor([[[4], [7], [9], [12]]])
    logits = model(src, torch.ones(1, 4, dtype=torch.bool), num_steps=5)[0]
    assert torch.cdist(logits, logits).add(torch.eye(5)).min() > 1e-4


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = small(name, mode)
    src, mask = random_batch([5, 3, 4])
    logits = model(src, mask, **decode_args(mode, batch=3, steps=4))
    target = torch.randint(0, OUT, (3, 4))
    F.cross_entropy(logits.flatten(0, 1), target.flatten()).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name",
    ["lstm", "attention-gru-luong", "pointer", "transformer-relative", "transformer-t5-shared"],
)
def test_save_and_load_give_identical_outputs(name: str, mode: str, tmp_path) -> None:
    model = small(name, mode).eval()
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    src, mask = random_batch([5, 3])
    args = decode_args(mode, batch=2, steps=4)
    assert torch.equal(model(src, mask, **args), loaded(src, mask, **args))


@pytest.mark.parametrize("name", ["lstm", "attention-gru-luong", "pointer", "transformer-rope"])
def test_generate(name: str) -> None:
    model = small(name, "previous_token").eval()
    src, mask = random_batch([5, 3])
    with pytest.raises(ValueError, match="bos_id"):
        model.generate(src, mask, num_steps=4)
    out = model.generate(src, mask, num_steps=4, bos_id=1)
    assert out.shape == (2, 4)
    # Greedy decoding is a fixed point of teacher forcing on its own outputs.
    tgt_in = torch.cat([torch.ones(2, 1, dtype=torch.long), out[:, :-1]], dim=1)
    assert torch.equal(model(src, mask, tgt_in=tgt_in).argmax(-1), out)
    none_model = small(name, "none").eval()
    expected = none_model(src, mask, num_steps=4).argmax(-1)
    assert torch.equal(none_model.generate(src, mask, num_steps=4), expected)


@pytest.mark.parametrize(
    "name",
    ["lstm", "attention-gru-luong", "attention-lstm-bahdanau", "pointer", "transformer-sinusoidal"],
)
def test_fits_a_fixed_copy_batch(name: str) -> None:
    """A few hundred Adam steps fit 8 fixed copy examples of length 4."""
    torch.manual_seed(0)
    model = small(name, "none")
    src = torch.randint(4, 14, (8, 4, 1))
    mask = torch.ones(8, 4, dtype=torch.bool)
    target = src[..., 0] - 4
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        logits = model(src, mask, num_steps=4)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (logits.argmax(-1) == target).all():
            break
    model.eval()
    assert torch.equal(model(src, mask, num_steps=4).argmax(-1), target)


def test_pointer_outputs_only_tokens_of_its_input() -> None:
    model = small("pointer", "none").eval()
    src = torch.tensor([[[5], [7], [2], [0]]])  # tokens 1 and 3, a special id, padding
    mask = torch.tensor([[True, True, True, False]])
    probs = model(src, mask, num_steps=3).exp()[0]  # (T, OUT)
    others = [i for i in range(OUT) if i not in (1, 3)]
    assert (probs[:, others] < 1e-6).all()
    assert (probs[:, [1, 3]].sum(-1) < 1 + 1e-5).all()  # the special id's share is lost
    assert (probs[:, [1, 3]].sum(-1) > 0).all()


def test_pointer_needs_a_useful_copy_map() -> None:
    with pytest.raises(ValueError, match="copy_map"):
        PointerSeq2Seq(PointerConfig(input_vocab_sizes=VOCAB, copy_map=(-1,) * 14))
    with pytest.raises(ValueError, match="copy_map"):
        PointerSeq2Seq(PointerConfig(input_vocab_sizes=VOCAB))
    with pytest.raises(ValueError, match="14"):
        PointerConfig(input_vocab_sizes=VOCAB, copy_map=(0, 1))
    with pytest.raises(ValueError, match="output ids"):
        PointerConfig(input_vocab_sizes=(3,), output_vocab_size=2, copy_map=(-1, 0, 2))


@pytest.mark.parametrize(
    ("config_class", "bad"),
    [
        (LSTMConfig, {"decoder_input": "tokens"}),
        (LSTMConfig, {"num_layers": 0}),
        (AttentionConfig, {"cell": "rnn"}),
        (AttentionConfig, {"attention": "dot"}),
        (AttentionConfig, {"hidden_dim": 15}),
        (TransformerConfig, {"position": "xpos"}),
        (TransformerConfig, {"d_model": 30, "num_heads": 4}),
        (TransformerConfig, {"dropout": 1.0}),
    ],
)
def test_configs_are_validated(config_class: type, bad: dict) -> None:
    with pytest.raises(ValueError):
        config_class(**bad)


# ---------------------------------------------------------------- position encodings


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_position_encoding_shapes(kind: str) -> None:
    encoding = build_position_encoding(kind, dim=16, heads=4, max_len=32)
    x = torch.randn(2, 7, 16)
    assert encoding.add_to_input(x).shape == x.shape
    qk = torch.randn(2, 4, 7, 4)
    assert encoding.rotate(qk).shape == qk.shape
    bias = encoding.attention_bias(5, 7)
    if kind in ("relative", "t5", "alibi"):
        assert bias is not None and bias.shape == (1, 4, 5, 7)
    else:
        assert bias is None
    changes_input = not torch.equal(encoding.add_to_input(x), x)
    assert changes_input == (kind in ("sinusoidal", "learned"))
    assert (not torch.equal(encoding.rotate(qk), qk)) == (kind == "rope")


def test_unknown_position_kind() -> None:
    with pytest.raises(ValueError, match="position must be one of"):
        build_position_encoding("xpos", dim=16, heads=4, max_len=32)


def test_sinusoidal_values() -> None:
    encoding = build_position_encoding("sinusoidal", dim=4, heads=1, max_len=1)
    table = encoding.add_to_input(torch.zeros(1, 1000, 4))[0]  # beyond max_len is fine
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(table[3, 0], torch.tensor(math.sin(3.0)))
    torch.testing.assert_close(table[3, 2], torch.tensor(math.sin(3.0 / 100.0)))


def test_learned_positions_reject_long_sequences() -> None:
    encoding = LearnedPositions(dim=8, max_len=10)
    assert encoding.add_to_input(torch.zeros(1, 10, 8)).shape == (1, 10, 8)
    with pytest.raises(ValueError, match="at most 10 positions"):
        encoding.add_to_input(torch.zeros(1, 11, 8))
    config = TransformerConfig(input_vocab_sizes=VOCAB, position="learned", max_positions=3)
    model = TransformerSeq2Seq(config)
    assert model(*random_batch([3]), num_steps=3).shape == (1, 3, OUT)
    with pytest.raises(ValueError, match="at most 3"):
        model(*random_batch([4]), num_steps=2)
    with pytest.raises(ValueError, match="at most 3"):
        model(*random_batch([3]), num_steps=4)


def test_rope_scores_depend_only_on_offset() -> None:
    rope = build_position_encoding("rope", dim=16, heads=2, max_len=1)
    q = torch.randn(8).expand(1, 1, 12, 8)  # the same query and key at every position
    k = torch.randn(8).expand(1, 1, 12, 8)
    scores = (rope.rotate(q) @ rope.rotate(k).transpose(-1, -2))[0, 0]
    for shift in (1, 3, 5):
        torch.testing.assert_close(scores[shift:, shift:], scores[:-shift, :-shift])
    assert not torch.allclose(scores[0, 1], scores[0, 2])
    norms = rope.rotate(q).norm(dim=-1)
    torch.testing.assert_close(norms, q.norm(dim=-1))


def test_alibi_bias() -> None:
    assert alibi_slopes(4) == [2**-2, 2**-4, 2**-6, 2**-8]
    assert alibi_slopes(8) == [2 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(6) == [*alibi_slopes(4), 2**-1, 2**-3]
    bias = ALiBi(heads=4).attention_bias(3, 5)[0]  # queries at the last 3 key positions
    assert bias[1, 0, 4].item() == pytest.approx(-2 * 2**-4)
    assert bias[0, 2, 0].item() == pytest.approx(-4 * 2**-2)
    assert (bias.diagonal(offset=2, dim1=1, dim2=2) == 0).all()
    with pytest.raises(ValueError, match="queries are the last"):
        ALiBi(heads=4).attention_bias(5, 3)


def test_relative_bias_buckets() -> None:
    relative = RelativePositionBias(heads=2, num_buckets=32, max_distance=128)
    offset = torch.arange(-300, 301)
    bucket = relative.bucket(offset)
    assert bucket.min() >= 0 and bucket.max() < 32
    assert torch.equal(bucket[300 - 7 : 300 + 1].flip(0), torch.arange(8))  # exact, offsets <= 0
    assert torch.equal(bucket[300 + 1 : 300 + 8], torch.arange(17, 24))  # positive: upper half
    assert bucket[300 + 128 :].unique().numel() == 1  # beyond max_distance: one bucket
    assert (bucket[300 + 1 :].diff() >= 0).all()  # monotone in distance
    bias = relative.attention_bias(4, 6)
    assert bias[0, :, 0, 2].equal(bias[0, :, 1, 3])  # depends on the offset only


def test_unidirectional_relative_bias_buckets() -> None:
    """T5's decoder buckets: all 32 for offsets <= 0, the first 16 of them exact."""
    causal = RelativePositionBias(heads=2, num_buckets=32, max_distance=128, bidirectional=False)
    back = -torch.arange(0, 300)
    bucket = causal.bucket(back)
    assert torch.equal(bucket[:16], torch.arange(16))
    assert bucket[16:19].unique().tolist() == [16]  # 16-18 back share the first wide bucket
    assert bucket[19] == 17
    assert bucket[113:].unique().tolist() == [31]
    assert (bucket.diff() >= 0).all()
    assert (causal.bucket(torch.arange(1, 5)) == 0).all()  # a later key counts as offset 0


@pytest.mark.parametrize("kind", ["relative", "t5"])
def test_t5_position_gives_only_the_decoder_unidirectional_buckets(kind: str) -> None:
    model = small(f"transformer-{kind}", "previous_token")
    assert model.encoder.position.bidirectional
    assert model.decoder.position.bidirectional == (kind == "relative")


def test_shared_layers_apply_one_layer_at_every_depth() -> None:
    torch.manual_seed(0)
    shared = small("transformer-t5-shared", "previous_token").eval()
    assert len(shared.encoder.layers) == len(shared.decoder.layers) == 1
    assert shared.encoder.depth == shared.decoder.depth == 2
    torch.manual_seed(0)
    separate = small("transformer-t5", "previous_token").eval()
    per_layer = sum(p.numel() for p in separate.decoder.layers[0].parameters())
    per_layer += sum(p.numel() for p in separate.encoder.layers[0].parameters())
    assert shared.num_parameters() == separate.num_parameters() - per_layer
    # the shared stack equals a separate one whose layers all hold the shared weights
    missing = separate.load_state_dict(shared.state_dict(), strict=False).missing_keys
    assert {key.split(".layers.")[1][0] for key in missing} == {"1"}
    for stack, source in ((separate.encoder, shared.encoder), (separate.decoder, shared.decoder)):
        stack.layers[1].load_state_dict(source.layers[0].state_dict())
        stack.layers[0].load_state_dict(source.layers[0].state_dict())
    src, mask = random_batch([5, 3])
    args = decode_args("previous_token", batch=2, steps=4)
    torch.testing.assert_close(shared(src, mask, **args), separate(src, mask, **args))


# ---------------------------------------------------------------- Transformer blocks


def test_padded_keys_get_zero_weight() -> None:
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=8, heads=2, dropout=0.0)
    x = torch.randn(2, 3, 8)
    context = torch.randn(2, 5, 8)
    key_mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    out = attention(x, context, key_mask=key_mask)
    changed = context.clone()
    changed[0, 2:] = 1e3 * torch.randn(3, 8)
    torch.testing.assert_close(attention(x, changed, key_mask=key_mask), out, atol=0, rtol=0)
    no_keys = attention(x, context, key_mask=torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(no_keys).all()


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_causal_self_attention_ignores_later_positions(kind: str) -> None:
    torch.manual_seed(0)
    encoding = build_position_encoding(kind, dim=8, heads=2, max_len=16)
    attention = MultiHeadAttention(dim=8, heads=2, dropout=0.0)
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[0, 4:] = torch.randn(2, 8)
    out = attention(x, x, causal=True, position=encoding)
    out_changed = attention(changed, changed, causal=True, position=encoding)
    torch.testing.assert_close(out[:, :4], out_changed[:, :4])
    assert not torch.allclose(out[:, 4:], out_changed[:, 4:])


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_transformer_stacks_are_batch_invariant(kind: str) -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(16, 4, 2, 32, 0.1, kind).eval()
    decoder = TransformerDecoder(16, 4, 2, 32, 0.1, kind).eval()
    x = torch.randn(3, 7, 16)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 2])[:, None]
    queries = torch.randn(3, 5, 16)
    memory = encoder(x, mask)
    causal = kind == "t5"  # its decoder buckets are for a causal decoder only
    out = decoder(queries, memory, mask, causal=causal)
    assert memory.shape == (3, 7, 16) and out.shape == (3, 5, 16)
    alone_memory = encoder(x[1:2, :4], mask[1:2, :4])
    torch.testing.assert_close(memory[1:2, :4], alone_memory, atol=1e-5, rtol=0)
    alone = decoder(queries[1:2], alone_memory, mask[1:2, :4], causal=causal)
    torch.testing.assert_close(out[1:2], alone, atol=1e-5, rtol=0)


def test_a_t5_decoder_refuses_non_causal_attention() -> None:
    decoder = TransformerDecoder(16, 4, 1, 32, 0.0, "t5")
    with pytest.raises(ValueError, match="unidirectional"):
        decoder(
            torch.randn(1, 3, 16),
            torch.randn(1, 2, 16),
            torch.ones(1, 2, dtype=torch.bool),
            causal=False,
        )


# ---------------------------------------------------------------- randomized positions


@pytest.mark.parametrize("kind", RANDOMIZABLE_KINDS)
def test_randomized_draws_are_sorted_distinct_subsets_of_the_range(kind: str) -> None:
    torch.manual_seed(0)
    encoding = build_position_encoding(kind, dim=16, heads=4, max_len=8, random_range=50)
    draws = [encoding.draw(20, torch.device("cpu")) for _ in range(200)]
    for positions in draws:
        assert positions.shape == (20,) and positions.dtype == torch.long
        assert (positions.diff() > 0).all() and 0 <= positions.min() and positions.max() < 50
    seen = torch.cat(draws).bincount(minlength=50)
    assert (seen > 0).all()  # every position of the range is drawn, not only 0..19
    assert seen[40:].sum() > 0.1 * seen.sum()
    assert build_position_encoding(kind, dim=16, heads=4, max_len=8).draw(20, "cpu") is None


def test_randomized_hooks_use_the_drawn_positions() -> None:
    positions = torch.tensor([3, 10, 11, 40])
    sinusoidal = build_position_encoding("sinusoidal", dim=4, heads=1, max_len=1, random_range=64)
    table = sinusoidal.add_to_input(torch.zeros(1, 4, 4), positions)[0]
    plain = build_position_encoding("sinusoidal", dim=4, heads=1, max_len=1)
    torch.testing.assert_close(table, plain.add_to_input(torch.zeros(1, 41, 4))[0, positions])
    rope = build_position_encoding("rope", dim=8, heads=1, max_len=1, random_range=64)
    x = torch.randn(1, 1, 41, 8)
    torch.testing.assert_close(
        rope.rotate(x[:, :, positions], positions), rope.rotate(x)[:, :, positions]
    )
    alibi = ALiBi(heads=2, random_range=64)
    bias = alibi.attention_bias(4, 4, positions)[0, 0]
    assert bias[0, 3].item() == pytest.approx(-37 * alibi_slopes(2)[0])
    relative = RelativePositionBias(heads=2, random_range=64)
    full = relative.attention_bias(41, 41)[0]
    torch.testing.assert_close(
        relative.attention_bias(4, 4, positions)[0], full[:, positions][:, :, positions]
    )


def test_randomized_positions_errors() -> None:
    with pytest.raises(ValueError, match="randomized positions need one of"):
        build_position_encoding("learned", dim=8, heads=2, max_len=8, random_range=16)
    with pytest.raises(ValueError, match="random_positions needs position in"):
        TransformerConfig(input_vocab_sizes=VOCAB, position="none", random_positions=64)
    with pytest.raises(ValueError, match="random_positions must be >= 0"):
        TransformerConfig(input_vocab_sizes=VOCAB, position="rope", random_positions=-1)
    encoding = build_position_encoding("rope", dim=8, heads=2, max_len=8, random_range=16)
    with pytest.raises(ValueError, match="at most 16 tokens, got 17"):
        encoding.draw(17, torch.device("cpu"))


def test_transformer_with_randomized_positions_trains_and_varies_by_draw() -> None:
    torch.manual_seed(0)
    config = TransformerConfig(
        input_vocab_sizes=VOCAB,
        output_vocab_size=OUT,
        position="rope",
        random_positions=256,
        dropout=0.0,
    )
    model = TransformerSeq2Seq(config).eval()
    src, mask = random_batch([30, 12])
    first, second = model(src, mask, num_steps=30), model(src, mask, num_steps=30)
    assert first.shape == (2, 30, OUT) and torch.isfinite(first).all()
    assert not torch.allclose(first, second)  # a fresh draw of positions per forward pass
    plain = TransformerSeq2Seq(dataclasses.replace(config, random_positions=0)).eval()
    plain.load_state_dict(model.state_dict())  # randomizing adds no parameters
    torch.testing.assert_close(plain(src, mask, num_steps=30), plain(src, mask, num_steps=30))
