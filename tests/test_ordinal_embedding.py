"""`OrdinalEmbedding` and the `ordinal_fields` option of every model's `TokenEmbedding`.

Factored and unfactored PANM reads over ordinal ids are compared in test_factored_reads.py (its
"id sort recipe, ordinal ids" variant: logits to 1e-5 and gradients, training and evaluation).
"""

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from panm.cli import main
from panm.models.base import OrdinalEmbedding, Seq2SeqConfig, TokenEmbedding
from panm.models.lm import LMConfig
from panm.models.registry import build_model, load_model
from panm.tasks import get_task

FAST = settings(max_examples=30, deadline=None, derandomize=True)
ID_FIELD = 1  # id_sort's slots are (4 + token, 1 + id); id 0 of field 1 is padding
SMALL = {"embed_dim": 16, "panm.hidden_dim": 16, "panm.pointer_dim": 8, "panm.key_dim": 8}
# The models that embed their input with `TokenEmbedding`: that module's name, small settings.
MODELS = {
    "panm": ("embedding", SMALL),
    "transformer+panm": ("embedding", {**SMALL, "decoder_layers": 1, "encoder_layers": 1}),
    "lstm": ("embed", {"hidden_dim": 16}),
    "attention": ("embed", {"hidden_dim": 16}),
    "pointer": ("embed", {"hidden_dim": 16}),
    "transformer": ("embed", {"d_model": 16, "ff_dim": 32}),
}


def random_ordinal(seed: int, num_embeddings: int = 40, dim: int = 8) -> OrdinalEmbedding:
    """An OrdinalEmbedding in float64 with random parameters (steps from -6 to 6 and beyond)."""
    generator = torch.Generator().manual_seed(seed)
    embedding = OrdinalEmbedding(num_embeddings, dim).double()
    with torch.no_grad():
        for parameter in embedding.parameters():
            parameter.copy_(3 * torch.randn(parameter.shape, generator=generator))
    return embedding


def monotone_direction(scores: torch.Tensor) -> int:
    """+1 if scores (N,) rise strictly, -1 if they fall strictly, 0 otherwise."""
    steps = scores.diff()
    return 1 if bool((steps > 0).all()) else -1 if bool((steps < 0).all()) else 0


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_every_linear_score_is_monotone_in_the_value(seed):
    embedding = random_ordinal(seed)
    table = embedding.weight.detach()[1:]  # values 1..V-1
    assert monotone_direction(table @ embedding.direction.detach()) == 1
    queries = torch.randn(20, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    for query in queries:
        sign = 1 if float(query @ embedding.direction.detach()) > 0 else -1
        assert monotone_direction(table @ query) == sign


def test_the_check_fails_on_a_free_embedding():
    """The property above is not a tautology: nn.Embedding rows do not have it."""
    table = nn.Embedding(40, 8).weight.detach()[1:]
    assert monotone_direction(table @ torch.randn(8)) == 0


@pytest.mark.parametrize("num_embeddings", [2, 3, 257])
def test_padding_row_is_zero_and_forward_reads_the_table(num_embeddings):
    embedding = OrdinalEmbedding(num_embeddings, 6)
    table = embedding.weight
    assert table.shape == (num_embeddings, 6)
    assert torch.equal(table[0], torch.zeros(6))
    ids = torch.randint(0, num_embeddings, (3, 5))
    ids[0, 0] = 0
    out = embedding(ids)
    assert out.shape == (3, 5, 6)
    assert torch.equal(out[0, 0], torch.zeros(6))
    torch.testing.assert_close(out, table[ids])


def test_initial_rows_have_the_scale_of_nn_embedding_rows():
    """At initialisation the values lie on a line about as long as two N(0, 1) rows are apart
    (sqrt(2 * dim)), with entries of about unit size."""
    torch.manual_seed(0)
    table = OrdinalEmbedding(257, 128).weight.detach()
    span = float((table[-1] - table[1]).norm())
    assert 0.5 * 16.0 < span < 2 * 16.0  # sqrt(2 * 128) = 16
    assert 0.7 < float(table[1:].std()) < 1.5


def test_gradients_reach_start_direction_and_steps():
    torch.manual_seed(0)
    embedding = OrdinalEmbedding(12, 5)
    ids = torch.randint(1, 12, (4, 7))
    (embedding(ids) * torch.randn(4, 7, 5)).sum().backward()
    for name in ("start", "direction", "steps"):
        grad = getattr(embedding, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_token_embedding_factors_equal_forward():
    torch.manual_seed(0)
    embed = TokenEmbedding((14, 257, 9), 16, ordinal_fields=(1, 2))
    assert [type(t) for t in embed.tables] == [nn.Embedding, OrdinalEmbedding, OrdinalEmbedding]
    ids = torch.stack(
        [torch.randint(0, v, (3, 11)) for v in (14, 257, 9)], dim=-1
    )  # (B, L, F), padding ids included
    rows, table = embed.factors(ids)
    assert table.shape == (14 + 257 + 9, 16)
    torch.testing.assert_close(table[rows].sum(-2), embed(ids))


def test_option_off_keeps_the_modules_and_state_dict_keys():
    """The default builds the free nn.Embedding tables of before the option, under the same keys
    and shapes, so checkpoints written before it load unchanged."""
    task = get_task("id_sort")
    for name, (attribute, small) in MODELS.items():
        model = build_model(name, task, small)
        embed = getattr(model, attribute)
        assert [type(t) for t in embed.tables] == [nn.Embedding, nn.Embedding]
        assert all(t.padding_idx == 0 for t in embed.tables)
        keys = {k: tuple(v.shape) for k, v in model.state_dict().items() if ".tables." in k}
        assert keys == {
            f"{attribute}.tables.0.weight": (14, 16),
            f"{attribute}.tables.1.weight": (257, 16),
        }, name


def test_a_config_saved_before_the_option_loads(tmp_path):
    """A saved config.json without the field (as written before it existed) loads, unchanged."""
    torch.manual_seed(0)
    task = get_task("id_sort")
    model = build_model("panm", task, SMALL)
    model.save_pretrained(tmp_path)
    payload = json.loads((tmp_path / "config.json").read_text())
    del payload["config"]["ordinal_fields"]
    (tmp_path / "config.json").write_text(json.dumps(payload))
    loaded = load_model(tmp_path)
    assert loaded.config == model.config and loaded.config.ordinal_fields == ()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["panm", "lstm", "transformer"])
def test_save_and_load_with_the_option(name, tmp_path):
    torch.manual_seed(0)
    task = get_task("id_sort")
    attribute, small = MODELS[name]
    model = build_model(name, task, {**small, "ordinal_fields": [ID_FIELD]}).eval()
    assert model.config.ordinal_fields == (ID_FIELD,)
    embed = getattr(model, attribute)
    assert isinstance(embed.tables[ID_FIELD], OrdinalEmbedding)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["ordinal_fields"] == [1]
    loaded = load_model(tmp_path).eval()
    assert loaded.config == model.config
    assert set(loaded.state_dict()) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    batch = task.batch(random.Random(0), (9, 9), 4)
    torch.testing.assert_close(
        loaded(batch.src, batch.src_mask, num_steps=9),
        model(batch.src, batch.src_mask, num_steps=9),
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_every_token_embedding_model_trains_with_ordinal_ids(name):
    torch.manual_seed(0)
    task = get_task("id_sort")
    attribute, small = MODELS[name]
    model = build_model(name, task, {**small, "ordinal_fields": [ID_FIELD]})
    batch = task.batch(random.Random(1), (7, 7), 4)
    logits = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    assert logits.shape == (4, 7, task.output_vocab_size) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt.flatten()).backward()
    ordinal = getattr(model, attribute).tables[ID_FIELD]
    for parameter in ordinal.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "vocab_sizes, fields, message",
    [
        ((14, 257), (2,), "ordinal field 2 is not an input field"),
        ((14, 257), (-1,), "ordinal field -1 is not an input field"),
        ((14, 257), (1, 1), "ordinal_fields has duplicates"),
        ((14, 257), (True,), "must hold ints"),
        ((14, 257), ("1",), "must hold ints"),
        ((14, 257), [1], "must be a tuple"),
        ((14, 1), (1,), "no value besides padding"),
    ],
)
def test_bad_ordinal_fields_are_clear_errors(vocab_sizes, fields, message):
    with pytest.raises(ValueError, match=message):
        Seq2SeqConfig(input_vocab_sizes=vocab_sizes, ordinal_fields=fields)
    with pytest.raises(ValueError, match=message):
        TokenEmbedding(vocab_sizes, 8, fields)


def test_an_ordinal_embedding_needs_a_value_besides_padding():
    with pytest.raises(ValueError, match="needs values besides padding"):
        OrdinalEmbedding(1, 4)


def test_lm_models_reject_ordinal_fields():
    with pytest.raises(ValueError, match="no ordinal_fields"):
        LMConfig(input_vocab_sizes=(14,), ordinal_fields=(0,))


@pytest.mark.parametrize("model", ["panm", "lstm"])
def test_command_line_trains_and_evaluates_with_ordinal_ids(model, tmp_path, capsys):
    run = tmp_path / "run"
    tiny = [f"{key}={value}" for key, value in MODELS[model][1].items()]
    sets = [
        arg for setting in [*tiny, f"ordinal_fields=[{ID_FIELD}]"] for arg in ("--set", setting)
    ]
    args = ["train", "--task", "id_sort", "--model", model, "--out", str(run), "--steps", "2",
            "--eval-every", "2", "--valid-count", "4", "--batch-size", "4", "--no-progress",
            *sets]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--lengths", "5", "--count", "3"]) == 0
    loaded = load_model(run / json.loads((run / "checkpoint.json").read_text())["latest"])
    assert loaded.config.ordinal_fields == (ID_FIELD,)
    code = main(["train", "--task", "id_sort", "--model", model, "--out", str(tmp_path / "bad"),
                 "--steps", "1", "--set", "ordinal_fields=[2]"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "ordinal field 2 is not an input field" in err and "Traceback" not in err
