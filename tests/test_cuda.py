"""The CUDA path: every model trains and decodes on a GPU and agrees with the CPU.

Skipped where no CUDA device is available (CI has none); run on a GPU machine with
`python -m pytest tests/test_cuda.py`.
"""

import random

import pytest
import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import accuracy
from panm.models import MODEL_NAMES, build_model
from panm.models.registry import LM_MODEL_NAMES
from panm.recipes import default_train_config
from panm.tasks import get_task
from panm.tasks.base import collate
from panm.training import train

# The LM models are tested in tests/test_lm.py on tiny random LMs.
SCRATCH_MODELS = [n for n in MODEL_NAMES if n not in LM_MODEL_NAMES]


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def batch_of(task, lengths, seed=0):
    rng = random.Random(seed)
    return collate([task.encode(task.sample(rng, n)) for n in lengths])


def recipe_model(task_name: str, **changes):
    config = default_train_config(task_name, "panm")
    return build_model("panm", get_task(task_name), {**config.model_overrides, **changes})


@pytest.mark.parametrize(
    "task_name", ["copy", "reverse", "mix", "dynamic_recall", "priority_sort", "id_sort"]
)
@pytest.mark.parametrize("pointers", ["soft", "hard"])
def test_recipe_model_agrees_with_cpu(task_name, pointers):
    task = get_task(task_name)
    torch.manual_seed(0)
    model = recipe_model(task_name, **{"panm.eval_pointers": pointers}).eval()
    batch = batch_of(task, [3, 30, 11, 88])
    on_cpu = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    gpu_batch = batch.to("cuda")
    on_gpu = model.to("cuda")(gpu_batch.src, gpu_batch.src_mask, num_steps=batch.tgt.shape[1])
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", SCRATCH_MODELS)
def test_every_model_trains_on_gpu(name):
    task = get_task("copy")
    overrides = default_train_config("copy", name).model_overrides
    model = build_model(name, task, overrides).to("cuda").train()
    batch = batch_of(task, [2, 7, 10]).to("cuda")  # training mode: decoys and base sampling
    logits = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt.flatten())
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.device.type == "cuda" for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("task_name", ["priority_sort", "id_sort"])
def test_sorting_recipe_trains_on_gpu(task_name):
    task = get_task(task_name)
    model = recipe_model(task_name).to("cuda").train()  # hard Mode-2 selection, straight-through
    batch = batch_of(task, [2, 7, 10]).to("cuda")
    logits = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt.flatten())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or p.grad.device.type == "cuda" for p in model.parameters())
    assert model.memory.relational.query.grad.abs().sum() > 0


def test_batch_invariance_on_gpu():
    task = get_task("reverse")
    torch.manual_seed(0)
    model = recipe_model("reverse").to("cuda").eval()
    lengths = [6, 2, 40]
    batch = batch_of(task, lengths).to("cuda")
    together = model(batch.src, batch.src_mask, num_steps=40)
    for i, n in enumerate(lengths):
        alone = model(batch.src[i : i + 1, :n], batch.src_mask[i : i + 1, :n], num_steps=40)
        torch.testing.assert_close(alone[0, :n], together[i, :n], atol=1e-4, rtol=1e-4)


def test_train_on_gpu_then_load_on_cpu(tmp_path):
    config = default_train_config("copy", "panm")
    config.steps, config.minutes, config.eval_every, config.valid_count = 60, None, 30, 64
    config.device = "cuda"
    result = train(config, tmp_path / "run", progress=False)
    assert result.step == 60 and result.best_step is not None
    task = get_task("copy")
    examples = [task.sample(random.Random(1), n) for n in (4, 9, 20)]
    on_gpu = load_checkpoint_model(tmp_path / "run", device="cuda")
    on_cpu = load_checkpoint_model(tmp_path / "run", device="cpu")
    assert next(on_gpu.parameters()).device.type == "cuda"
    gpu_score = accuracy(on_gpu, task, examples, device="cuda")
    cpu_score = accuracy(on_cpu, task, examples, device="cpu")
    assert gpu_score == cpu_score


def test_resume_on_gpu(tmp_path):
    config = default_train_config("copy", "panm")
    config.steps, config.minutes, config.eval_every, config.valid_count = 30, None, 30, 32
    config.device = "cuda"
    train(config, tmp_path / "run", progress=False)
    config.steps = 60
    result = train(config, tmp_path / "run", resume=True, progress=False)
    assert result.step == 60
