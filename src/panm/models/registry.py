"""Model names of the command line and benchmark, and how to build or load each one.

`build_model("panm", task, **{"embed_dim": 64, "panm.decoy_slots": 4})` builds a model for a
task's vocabularies; dotted keys reach nested configs. `load_model(dir)` reads any saved model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any

from panm.models.attention import AttentionConfig, AttentionSeq2Seq
from panm.models.base import Seq2SeqConfig, Seq2SeqModel
from panm.models.lm import LMSeq2Seq
from panm.models.lstm import LSTMConfig, LSTMSeq2Seq
from panm.models.panm_seq2seq import PANMSeq2Seq
from panm.models.pointer import PointerConfig, PointerSeq2Seq
from panm.models.transformer import TransformerConfig, TransformerSeq2Seq
from panm.pretrained import CONFIG_NAME
from panm.tasks.algorithmic import AlgorithmicTask
from panm.tasks.base import Task

# name -> (model class, preset config fields on top of the config class defaults)
MODELS: dict[str, tuple[type[Seq2SeqModel], dict[str, Any]]] = {
    "panm": (PANMSeq2Seq, {}),
    "transformer+panm": (
        PANMSeq2Seq,
        {"encoder": "transformer", "encoder_layers": 3, "decoder": "transformer", "dropout": 0.1},
    ),
    "lstm": (LSTMSeq2Seq, {}),
    "attention": (AttentionSeq2Seq, {}),
    "pointer": (PointerSeq2Seq, {}),
    "transformer": (TransformerSeq2Seq, {}),
    "lm": (LMSeq2Seq, {"decoder_input": "previous_token"}),
    "lm+panm": (LMSeq2Seq, {"decoder_input": "previous_token", "use_panm": True}),
}
MODEL_NAMES = tuple(MODELS)
LM_MODEL_NAMES = tuple(name for name, (cls, _) in MODELS.items() if cls is LMSeq2Seq)
"""The models built on a pretrained language model (they need the `lm` extra and its weights)."""
_CLASSES = {cls.model_type: cls for cls, _ in MODELS.values()}

__all__ = [
    "EVALUATION_SETTINGS",
    "LM_MODEL_NAMES",
    "MODELS",
    "MODEL_NAMES",
    "AttentionConfig",
    "LSTMConfig",
    "PointerConfig",
    "TransformerConfig",
    "build_model",
    "evaluation_settings",
    "load_model",
    "model_config",
    "with_overrides",
]


# Model settings that change only what the model does outside training: a finished run can be
# tested again under other values of these (a bench does so when its config changes them).
EVALUATION_SETTINGS = ("panm.eval_base", "panm.eval_pointers")


def evaluation_settings(config: Any) -> dict[str, Any]:
    """The values of the `EVALUATION_SETTINGS` that model `config` has, by dotted key."""
    values = {}
    for key in EVALUATION_SETTINGS:
        node = config
        try:
            for part in key.split("."):
                node = getattr(node, part)
        except AttributeError:
            continue
        values[key] = node
    return values


def with_overrides(config: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    """A copy of dataclass `config` with `overrides` applied; "a.b" sets field b of field a.

    `prefix` is the dotted path of `config` itself, for error messages."""
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(config)}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(
                f"unknown setting {prefix + key!r} for {type(config).__name__}; "
                f"known: {', '.join(sorted(names))}"
            )
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = with_overrides(
            direct.get(head, getattr(config, head)), sub, prefix=f"{prefix}{head}."
        )
    hints = typing.get_type_hints(type(config))
    for name, value in direct.items():  # JSON lists (from --set) for tuple fields
        if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            direct[name] = tuple(value)
    return dataclasses.replace(config, **direct)


def model_config(name: str, task: Task, overrides: dict[str, Any] | None = None) -> Seq2SeqConfig:
    """The config of model `name` for `task`'s vocabularies, with its preset and `overrides`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(MODEL_NAMES)}")
    cls, preset = MODELS[name]
    settings: dict[str, Any] = {
        "input_vocab_sizes": tuple(task.input_vocab_sizes),
        "output_vocab_size": task.output_vocab_size,
        "decoder_input": "none" if task.eos_id is None else "previous_token",
        **preset,
    }
    if cls is PointerSeq2Seq:
        settings["copy_map"] = tuple(task.copy_map())
    if cls is LMSeq2Seq:
        if not isinstance(task, AlgorithmicTask) or len(task.input_vocab_sizes) != 1:
            raise ValueError(
                f"model {name!r} writes prompts for the algorithmic tasks with one input field "
                f"(copy, reverse, mix, dynamic_recall), not {task.name!r}"
            )
        settings["task_name"] = task.name
    return with_overrides(cls.config_class(), {**settings, **(overrides or {})})


def build_model(name: str, task: Task, overrides: dict[str, Any] | None = None) -> Seq2SeqModel:
    """A freshly initialised model `name` for `task`."""
    config = model_config(name, task, overrides)
    return MODELS[name][0](config)


def load_model(directory: str | os.PathLike, map_location: str = "cpu") -> Seq2SeqModel:
    """Loads any model saved with `save_pretrained`."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a saved model")
    try:
        model_type = json.loads(path.read_text())["model_type"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a valid model config: {error}") from error
    if model_type not in _CLASSES:
        raise ValueError(f"{path} holds an unknown model type {model_type!r}")
    return _CLASSES[model_type].from_pretrained(directory, map_location=map_location)
