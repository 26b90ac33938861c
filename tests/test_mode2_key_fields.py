"""`mode2_key_fields`: Mode-2 keys from chosen input fields alone (ID Sort's ids).

With an ordinal id field and the sorting recipe's Mode-2 head (constant query, hard selection,
exclusion), the head reads the slots in id order for any weights: by construction, not by
training. Other fields (ID Sort's tokens) then cannot change which slot a head reads.
"""

import random

import pytest
import torch

from panm.models.registry import build_model, load_model
from panm.recipes import default_train_config
from panm.tasks import get_task

ID_FIELD = 1
SMALL = {"embed_dim": 16, "panm.hidden_dim": 16, "panm.pointer_dim": 8, "panm.key_dim": 8}


def id_sort_model(seed: int, **changes):
    torch.manual_seed(seed)
    task = get_task("id_sort")
    recipe = default_train_config("id_sort", "panm").model_overrides
    settings = {**recipe, **SMALL, "ordinal_fields": (ID_FIELD,), **changes}
    return build_model("panm", task, settings).eval(), task


def mode2_slots(model, src, mask):
    with torch.no_grad():
        trace = model.trace(src, mask, num_steps=src.shape[1])
    return trace.mode2_weights[:, :, 0].argmax(-1)  # (B, T): the slot the head reads


@pytest.mark.parametrize("seed", range(5))
def test_the_head_reads_the_slots_in_id_order_for_any_weights(seed):
    model, task = id_sort_model(seed, mode2_key_fields=(ID_FIELD,))
    batch = task.batch(random.Random(seed), (30, 30), 8)
    slots = mode2_slots(model, batch.src, batch.src_mask)
    ids = batch.src[..., ID_FIELD].gather(1, slots)  # the ids read, step by step
    steps = ids.diff(dim=1)
    assert bool((steps > 0).all()) or bool((steps < 0).all())  # one direction for all rows


@pytest.mark.parametrize("key_fields, moved", [((ID_FIELD,), False), ((), True)])
def test_other_fields_cannot_move_the_head_only_with_key_fields(key_fields, moved):
    model, task = id_sort_model(0, mode2_key_fields=key_fields)
    batch = task.batch(random.Random(3), (40, 40), 8)
    other_tokens = batch.src.clone()
    token_values = other_tokens[..., 0]
    other_tokens[..., 0] = torch.where(token_values > 0, token_values.flip(1).clamp(min=1), 0)
    before = mode2_slots(model, batch.src, batch.src_mask)
    after = mode2_slots(model, other_tokens, batch.src_mask)
    assert bool((before != after).any()) == moved


def test_gradients_reach_the_key_field_and_the_option_survives_save_and_load(tmp_path):
    model, task = id_sort_model(1, mode2_key_fields=(ID_FIELD,))
    model.train()
    batch = task.batch(random.Random(0), (6, 6), 4)
    logits = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt.flatten()).backward()
    key = model.memory.relational.key.weight
    assert key.grad is not None and key.grad.abs().sum() > 0
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    assert loaded.config.mode2_key_fields == (ID_FIELD,)
    model.eval()
    torch.testing.assert_close(
        loaded(batch.src, batch.src_mask, num_steps=6),
        model(batch.src, batch.src_mask, num_steps=6),
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mode2_key_fields": (2,)}, "mode2 key field 2 is not an input field"),
        ({"mode2_key_fields": (1, 1)}, "mode2_key_fields has duplicates"),
        ({"mode2_key_fields": (True,)}, "must hold ints"),
        ({"mode2_key_fields": (1,), "factored_reads": False}, "factored_reads"),
        (
            {"mode2_key_fields": (1,), "panm.num_mode2": 0, "panm.mode2_exclusion": False},
            "num_mode2",
        ),
    ],
)
def test_bad_key_fields_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        id_sort_model(0, **changes)


def test_key_rows_must_match_the_table():
    model, task = id_sort_model(0)
    batch = task.batch(random.Random(0), (5, 5), 2)
    rows, table = model.embedding.factors(batch.src)
    memory = model.embedding(batch.src)
    with pytest.raises(ValueError, match="bool mask"):
        model.memory(memory, batch.src_mask, num_steps=5, memory_tokens=(rows, table),
                     key_rows=torch.ones(3, dtype=torch.bool))  # fmt: skip
