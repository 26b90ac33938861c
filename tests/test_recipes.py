"""The default recipes (`panm.recipes`): every one builds, and per-task changes stay per task."""

import pytest

from panm.bench import BenchConfig, plan_runs
from panm.models.registry import LM_MODEL_NAMES, MODEL_NAMES, model_config
from panm.recipes import (
    FORWARD_GRU_MEMORY,
    PANM_EXTRAPOLATING,
    POINTER_TASKS,
    SORT_BY_CONTENT,
    default_train_config,
)
from panm.tasks import TASK_NAMES, get_task


@pytest.mark.parametrize("task_name", TASK_NAMES)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_recipe_builds_a_valid_model(task_name, model):
    config = default_train_config(task_name, model)
    task = get_task(task_name)
    if model in LM_MODEL_NAMES and (len(task.input_vocab_sizes) != 1 or task.eos_id is not None):
        with pytest.raises(ValueError, match="writes prompts for the algorithmic tasks"):
            model_config(model, task, config.model_overrides)
        return
    model_config(model, task, config.model_overrides)


def test_id_sort_trains_panm_with_large_batches_and_close_ids_only():
    panm = default_train_config("id_sort", "panm")
    assert (panm.batch_size, panm.eval_every) == (2048, 50)
    assert panm.task_options == {"close_ids": 0.5}
    for task_name, model in [("id_sort", "lstm"), ("priority_sort", "panm"), ("copy", "panm")]:
        config = default_train_config(task_name, model)
        assert (config.batch_size, config.eval_every) == (64, 500)
        assert config.task_options == {}


def test_bench_keeps_the_recipe_task_options_unless_the_config_names_some():
    def id_sort_options(train_options):
        config = BenchConfig(tasks=["id_sort"], models=["panm"], train_options=train_options)
        return plan_runs(config)[0].train.task_options

    assert id_sort_options({}) == {"close_ids": 0.5}
    assert id_sort_options({"task_options": {}}) == {}
    assert id_sort_options({"task_options": {"close_ids": 0.2}}) == {"close_ids": 0.2}


def test_sorting_recipes_sort_with_one_hard_exclusive_mode2_head():
    for task_name in ("priority_sort", "id_sort"):
        overrides = default_train_config(task_name, "panm").model_overrides
        panm = model_config("panm", get_task(task_name), overrides).panm
        assert panm.mode2_query == "constant" and panm.mode2_selection == "hard"
        assert panm.mode2_exclusion and not panm.mode2_decoys
    priority = default_train_config("priority_sort", "panm").model_overrides
    assert priority["panm.mode2_tie_margin"] == 1.0


def test_chomsky_recipes_follow_the_task_families():
    def overrides(task_name):
        return default_train_config(task_name, "panm").model_overrides

    bits = {"panm.address_bits": 10}  # 1,024 addresses for test lengths up to 500
    assert overrides("reverse_string") == {**PANM_EXTRAPOLATING, **POINTER_TASKS, **bits}
    assert overrides("reverse_string") == {**overrides("reverse"), **bits}  # the pointer tasks'
    duplicate = {"panm.pointer_restart": 1, "panm.carry_bases": 0.5}
    assert overrides("duplicate_string") == {**overrides("reverse_string"), **duplicate}
    odds_first = {"panm.pointer_restart": 2, "panm.carry_bases": 0.5}
    assert overrides("odds_first") == {**overrides("reverse_string"), **odds_first}
    assert overrides("bucket_sort") == {
        **PANM_EXTRAPOLATING,
        **SORT_BY_CONTENT,
        **bits,
        "ordinal_fields": (0,),
        "panm.num_mode2": 2,
    }
    for task_name in ("stack_manipulation", "parity_check"):
        assert overrides(task_name) == {**PANM_EXTRAPOLATING, **FORWARD_GRU_MEMORY, **bits}
    addition = {  # digit t of both numbers at step t, no Mode-2
        "encoder": "suffix_or",  # "no 1 left" at each slot
        "memory_source": "sum",
        "pointer_start_after": 6,  # "+"
        "panm.given_starts": 1,
        "panm.read_start": True,
        "panm.shared_moves": True,
        "panm.initial_read": False,
        "panm.num_mode2": 0,
        "panm.carry_bases": 0.5,
    }
    assert overrides("binary_addition") == {**PANM_EXTRAPOLATING, **bits, **addition}
    assert default_train_config("bucket_sort", "lstm").model_overrides == {}


def test_only_panm_on_the_second_pass_tasks_skips_gradient_spikes():
    def factor(task_name, model="panm"):
        return default_train_config(task_name, model).skip_gradient_spikes

    assert factor("duplicate_string") == factor("odds_first") == 10.0
    assert factor("binary_addition") == 10.0
    assert factor("odds_first", "lstm") is None
    assert factor("reverse_string") is None and factor("copy") is None


def test_the_second_pass_tasks_validate_at_carry_bases():
    for task_name in ("duplicate_string", "odds_first", "binary_addition"):
        assert default_train_config(task_name, "panm").valid_base == "carry"
        assert default_train_config(task_name, "panm").adam_beta2 == 0.95
    assert default_train_config("reverse_string", "panm").adam_beta2 == 0.999
    assert default_train_config("odds_first", "lstm").adam_beta2 == 0.999
    assert default_train_config("reverse_string", "panm").valid_base == "zero"
    assert default_train_config("odds_first", "lstm").valid_base == "zero"


def test_only_panm_on_duplicate_string_starts_on_short_sequences():
    assert default_train_config("duplicate_string", "panm").length_warmup == (10, 6000)
    assert default_train_config("duplicate_string", "lstm").length_warmup is None
    assert default_train_config("odds_first", "panm").length_warmup is None
    assert default_train_config("binary_addition", "panm").length_warmup == (10, 6000)


def test_dynamic_recall_keys_mode2_on_the_previous_slot_and_id_sort_on_the_ids():
    recall = model_config(
        "panm",
        get_task("dynamic_recall"),
        default_train_config("dynamic_recall", "panm").model_overrides,
    )
    assert recall.memory_source == "embedding" and recall.panm.mode2_keys == "previous_slot"
    assert recall.panm.mode2_selection == "hard" and not recall.panm.mode2_decoys
    id_sort = model_config(
        "panm", get_task("id_sort"), default_train_config("id_sort", "panm").model_overrides
    )
    assert id_sort.ordinal_fields == (1,) and id_sort.mode2_key_fields == (1,)


def test_the_pointer_tasks_share_one_recipe_and_other_tasks_keep_the_base():
    def overrides(task_name):
        return default_train_config(task_name, "panm").model_overrides

    copy = overrides("copy")
    assert copy == {**PANM_EXTRAPOLATING, **POINTER_TASKS}
    for task_name in ("reverse", "mix", "dynamic_recall"):
        assert overrides(task_name) == copy
    assert copy["panm.output_initial_read"] and copy["panm.output_previous_read"]
    assert not copy["panm.initial_read"]
    assert overrides("scan") == PANM_EXTRAPOLATING
