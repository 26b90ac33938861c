"""Slow end-to-end checks that training really teaches the models (`python -m pytest -m slow`).

Each trains one model for a couple of minutes with the default recipe and asserts what the
benchmark claims: PANM extrapolates on Reverse and sorts by priority at twice the training
length, the baselines fit the training lengths but not
twice their length.
"""

from dataclasses import replace

import pytest

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import evaluate_lengths
from panm.recipes import default_train_config
from panm.tasks import get_task
from panm.training import train

pytestmark = pytest.mark.slow


def train_and_test(tmp_path, task_name, model, steps):
    config = replace(default_train_config(task_name, model), steps=steps, minutes=None)
    train(config, tmp_path / model, progress=False)
    task = get_task(task_name)
    best = load_checkpoint_model(tmp_path / model)
    return evaluate_lengths(best, task, [10, 22], count=100)


def test_panm_reverse_extrapolates_to_twice_the_training_length(tmp_path):
    results = train_and_test(tmp_path, "reverse", "panm", steps=5000)
    assert results[10].sequence_accuracy >= 0.95
    assert results[22].sequence_accuracy >= 0.9


def test_panm_priority_sort_extrapolates_to_twice_the_training_length(tmp_path):
    results = train_and_test(tmp_path, "priority_sort", "panm", steps=2000)
    assert results[10].sequence_accuracy >= 0.95
    assert results[22].sequence_accuracy >= 0.9


def test_attention_baseline_fits_training_lengths_only(tmp_path):
    results = train_and_test(tmp_path, "reverse", "attention", steps=2000)
    assert results[10].sequence_accuracy >= 0.8
    assert results[22].sequence_accuracy <= 0.1
