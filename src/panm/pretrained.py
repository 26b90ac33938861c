"""Saving and loading modules as a JSON config plus safetensors weights (no pickle).

A module that mixes in :class:`Pretrained` is built from a single config dataclass
(`Module(config)`) and keeps it as `self.config`. `save_pretrained(dir)` writes `config.json`
and `model.safetensors`; `from_pretrained(dir)` rebuilds the module from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

C = TypeVar("C")
P = TypeVar("P", bound="Pretrained")


def config_to_dict(config: Any) -> dict:
    """A dataclass config (nested ones included) as a JSON-able dict."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: dict) -> C:
    """Rebuilds the dataclass `cls` from `config_to_dict` output; unknown keys are an error.

    A field `cls` has retired (its `retired_fields`: name -> (the value that behaves as today,
    the last commit that has the field)) is dropped when it holds that value, and an error
    otherwise.
    """
    data = dict(data)
    for name, (kept, commit) in getattr(cls, "retired_fields", {}).items():
        value = data.pop(name, kept)
        if value != kept:
            raise ValueError(
                f"{cls.__name__}.{name} was removed after commit {commit}; this config sets it "
                f"to {value!r}, not {kept!r}: use that commit to load it"
            )
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value)
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return config_from_dict(arg, value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def atomic_write(path: Path, write: typing.Callable[[Path], None]) -> None:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it into place.

    A crash at any point leaves either the old file or the new one, never a partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Pretrained:
    """Mixin for `nn.Module`s built from one config dataclass."""

    config_class: ClassVar[type]
    model_type: ClassVar[str]
    config: Any

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The tensors `save_pretrained` writes: the whole state dict, unless a module keeps
        weights it does not own (a pretrained LM loaded from its own files)."""
        return self.state_dict()  # type: ignore[attr-defined]

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        """Puts `saved_state`'s tensors back; anything missing or extra is an error."""
        self.load_state_dict(state)  # type: ignore[attr-defined]

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"model_type": self.model_type, "config": config_to_dict(self.config)}
        state = {k: v.detach().contiguous().cpu() for k, v in self.saved_state().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p)))
        atomic_write(
            directory / CONFIG_NAME, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n")
        )

    @classmethod
    def from_pretrained(
        cls: type[P], directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> P:
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: not a saved {cls.__name__}")
        payload = json.loads(config_path.read_text())
        if payload.get("model_type") != cls.model_type:
            raise ValueError(
                f"{directory} holds a {payload.get('model_type')!r} model, not {cls.model_type!r}"
            )
        model = cls(config_from_dict(cls.config_class, payload["config"]))  # type: ignore[call-arg]
        model.load_saved_state(load_file(str(weights_path)))
        return model.to(map_location)  # type: ignore[attr-defined]
