"""The authors' PANM (thaihungle/PANM) built from a checkout, for side-by-side timing.

Nothing of their code is part of this package: :func:`load_authors_code` imports their
``baselines/panm.py`` and ``datasets/copy.py`` from a directory given at run time (a checkout of
their repository, or the reference folder ``shared/reference/authors-panm``), under private
module names so that their top-level package names (``datasets``, ``baselines``) cannot clash
with installed packages.

:func:`authors_copy_setup` builds their Copy model as their ``run_algo_task.py`` does (input
width = symbols + 2 delimiters, ``controller_size`` = ``hidden_dim`` = half the task file's
controller size, i.e. 128) and one batch of their Copy generator (inputs (L + 2, B, 12) one-hot,
targets (L, B, 10)); its ``train_step`` is their training iteration (``init_sequence``, forward,
cross entropy against the target's argmax, backward, ``clip_grad_value_`` at their default 10,
RMSprop with lr 1e-4, alpha 0.95, momentum 0.9) and its ``eval_step`` their forward in eval
mode under ``torch.no_grad`` (their script evaluates with gradients on; no_grad favours them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

MODEL_FILE = Path("baselines") / "panm.py"
DATA_FILE = Path("datasets") / "copy.py"
SYMBOLS = 10
"""Their Copy task's symbols (``seq_width`` in tasks/copy.json); inputs add two delimiters."""
LEARNING_RATE = 1e-4
RMSPROP_ALPHA = 0.95
RMSPROP_MOMENTUM = 0.9
CLIP_VALUE = 10.0
"""Their optimiser and gradient clipping (args.py defaults used for Copy)."""


@dataclass
class AuthorsCode:
    """Their PANM class and Copy generator class, and where they came from."""

    directory: Path
    model_class: type
    copy_dataset_class: type
    model_sha256: str


@dataclass
class AuthorsSetup:
    """Their model with one Copy batch, and its timed step functions."""

    model: nn.Module
    train_step: Callable[[], None]
    eval_step: Callable[[], None]
    parameters: int


def _import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_authors_code(directory: str | Path) -> AuthorsCode:
    """Imports their PANM and CopyDataset from `directory` (see the module doc).

    Raises FileNotFoundError when `directory` lacks baselines/panm.py or datasets/copy.py, and
    ValueError when those files do not define PANM / CopyDataset.
    """
    directory = Path(directory).expanduser().resolve()
    for relative in (MODEL_FILE, DATA_FILE):
        if not (directory / relative).is_file():
            raise FileNotFoundError(
                f"--authors-code {directory}: no {relative} (expected a checkout of "
                "thaihungle/PANM or shared/reference/authors-panm)"
            )
    model_module = _import_file("_panm_authors_model", directory / MODEL_FILE)
    data_module = _import_file("_panm_authors_copy", directory / DATA_FILE)
    model_class = getattr(model_module, "PANM", None)
    copy_class = getattr(data_module, "CopyDataset", None)
    if not isinstance(model_class, type) or not isinstance(copy_class, type):
        raise ValueError(f"{directory}: {MODEL_FILE} must define PANM, {DATA_FILE} CopyDataset")
    digest = hashlib.sha256((directory / MODEL_FILE).read_bytes()).hexdigest()
    return AuthorsCode(directory, model_class, copy_class, digest)


def authors_copy_setup(
    code: AuthorsCode,
    width: int,
    batch_size: int,
    length: int,
    device: torch.device,
    seed: int,
) -> AuthorsSetup:
    """Their Copy model at hidden/controller size `width`, on one batch of `batch_size`
    sequences of `length` symbols from their generator, seeded with `seed`."""
    torch.manual_seed(seed)
    in_size = SYMBOLS + 2
    with warnings.catch_warnings():  # their 1-layer encoder GRU is given dropout 0.5
        warnings.simplefilter("ignore", UserWarning)
        model = code.model_class(
            in_size=in_size,
            out_size=SYMBOLS,
            embed_size=in_size,
            controller_size=width,
            hidden_dim=width,
        ).to(device)
    generator = code.copy_dataset_class(
        {
            "seq_width": SYMBOLS,
            "min_seq_len": 1,
            "max_seq_len": length,
            "prob": 0.5,
            "mode": "onehot",
        }
    )
    data: dict[str, Any] = generator.get_sample_wlen(length, bs=batch_size)
    inputs, target = data["input"].to(device), data["target"].to(device)
    labels = target.reshape(-1, SYMBOLS).argmax(-1)
    optimizer = torch.optim.RMSprop(
        model.parameters(), lr=LEARNING_RATE, alpha=RMSPROP_ALPHA, momentum=RMSPROP_MOMENTUM
    )

    def train_step() -> None:
        model.train()
        optimizer.zero_grad()
        model.init_sequence(batch_size=batch_size)
        out, _ = model(inputs, target_length=length)
        loss = nn.functional.cross_entropy(out.reshape(-1, SYMBOLS), labels)
        loss.backward()
        nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
        optimizer.step()

    def eval_step() -> None:
        model.eval()
        with torch.no_grad():
            model.init_sequence(batch_size=batch_size)
            model(inputs, target_length=length)

    parameters = sum(p.numel() for p in model.parameters())
    return AuthorsSetup(model, train_step, eval_step, parameters)
