"""Sequence-to-sequence models: PANM and the baselines, behind one interface (see `base`)."""

from panm.models.base import Seq2SeqConfig, Seq2SeqModel, TokenEmbedding
from panm.models.registry import MODEL_NAMES, MODELS, build_model, load_model, model_config

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "Seq2SeqConfig",
    "Seq2SeqModel",
    "TokenEmbedding",
    "build_model",
    "load_model",
    "model_config",
]
