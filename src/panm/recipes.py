"""Default training recipes: what `panm train --task T --model M` does with no other flags.

Kept apart from the library code (as in torchtune): a recipe is data, a `TrainConfig`.
"""

from __future__ import annotations

from panm.training import TrainConfig

# The PANM design that extrapolates (see docs/results.md): memory slots hold token embeddings,
# address attention matches every address bit, training adds decoy slots, the controller reads
# the initial pointers' slots before step 1 and starts from the mean (not the sum) of memory.
PANM_EXTRAPOLATING = {
    "encoder": "none",
    "memory_source": "embedding",
    "panm.address_similarity": "bitwise",
    "panm.decoy_slots": 8,
    "panm.initial_read": True,
    "panm.controller_init": "memory_mean",
}


def default_train_config(task: str, model: str) -> TrainConfig:
    """The documented default recipe for `model` on `task`."""
    overrides = dict(PANM_EXTRAPOLATING) if model == "panm" else {}
    return TrainConfig(task=task, model=model, model_overrides=overrides)
