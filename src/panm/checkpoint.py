"""The run directory: checkpoints written atomically, and how to find the latest and best one.

    DIR/run.json              the TrainConfig of the run
    DIR/metrics.jsonl         one JSON line per logged step
    DIR/checkpoints/step-N/   config.json + model.safetensors (the model) + trainer.pt
    DIR/checkpoint.json       {"latest": "checkpoints/step-N", "best": "...", ...}
    DIR/.lock                 held (flock) by the one process that writes the run


A checkpoint folder is written under a temporary name and renamed when complete; only then is
`checkpoint.json` replaced (atomically) to point at it. A crash at any moment leaves the previous
checkpoint intact and referenced; a failed write (a full disk) removes its partial folder and
leaves the previous checkpoint as it was. `trainer.pt` holds optimizer and RNG state and is read
with `weights_only=True` (no arbitrary pickle code runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from panm.models.base import Seq2SeqModel
from panm.models.registry import load_model, with_overrides
from panm.pretrained import CONFIG_NAME, atomic_write

INDEX_NAME = "checkpoint.json"
TRAINER_NAME = "trainer.pt"
LOCK_NAME = ".lock"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or cannot be written."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Holds DIR/.lock, an exclusive `flock`, while the caller writes the run directory.

    A second process (or a second holder in this one) gets a `CheckpointError` instead of
    writing the same files. The kernel releases the lock when its holder ends, even by kill -9.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise CheckpointError(
                f"{run_dir} is being written by another panm process ({holder}); "
                "wait for it to end or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_checkpoint(
    run_dir: Path,
    model: Seq2SeqModel,
    trainer_state: dict[str, Any],
    step: int,
    index: dict[str, Any],
) -> dict[str, Any]:
    """Writes checkpoint `step` and returns the new index (with "latest" pointing at it).

    `index` may carry other keys (e.g. "best"); checkpoints it no longer names are deleted.
    """
    name = f"checkpoints/step-{step:08d}"
    final = run_dir / name
    tmp = run_dir / "checkpoints" / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        torch.save(trainer_state, tmp / TRAINER_NAME)
    except (OSError, RuntimeError, SafetensorError) as error:  # torch.save: RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint {final}: {error}") from error
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    index = {**index, "latest": name}
    write_index(run_dir, index)
    keep = {v for k, v in index.items() if k in ("latest", "best")}
    for old in (run_dir / "checkpoints").glob("step-*"):
        if f"checkpoints/{old.name}" not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return index


def write_index(run_dir: Path, index: dict[str, Any]) -> None:
    atomic_write(run_dir / INDEX_NAME, lambda p: p.write_text(json.dumps(index, indent=2) + "\n"))


def read_index(run_dir: Path) -> dict[str, Any]:
    path = run_dir / INDEX_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from error


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """The model folder for `path`: a run directory (its `which` checkpoint) or a model folder."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    index = read_index(path)
    if which not in index:
        raise CheckpointError(f"{path} holds no {which} checkpoint (no {INDEX_NAME} entry)")
    return path / index[which]


def load_checkpoint_model(
    path: str | os.PathLike,
    which: str = "best",
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> Seq2SeqModel:
    """Loads the model of a run directory or model folder, as a `CheckpointError` on failure.

    overrides: settings to change on the loaded model (dotted keys, as `--set`), for settings
    its weights do not depend on, e.g. {"panm.eval_base": "random"}; a setting that changes the
    weights' shapes is an error.
    """
    folder = resolve_checkpoint(path, which)
    try:
        model = load_model(folder, map_location=device)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(f"cannot load checkpoint {folder}: {error}") from error
    if not overrides:
        return model
    try:
        changed = type(model)(with_overrides(model.config, overrides))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot apply {overrides} to {folder}: {error}") from error
    try:
        changed.load_state_dict(model.state_dict())
    except RuntimeError as error:
        raise CheckpointError(
            f"cannot apply {overrides} to {folder}: the saved weights do not fit the changed "
            "model (settings that change the parameters cannot be changed after training)"
        ) from error
    return changed.to(device)


def load_trainer_state(folder: Path) -> dict[str, Any]:
    try:
        return torch.load(folder / TRAINER_NAME, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"cannot read {folder / TRAINER_NAME}: {error}") from error
