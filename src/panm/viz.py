"""Pictures of the pointer walk: Mode-1 and Mode-2 attention over slots at every output step."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from panm.evaluation import fresh_examples
from panm.models.base import forward_batch
from panm.models.panm_seq2seq import PANMSeq2Seq
from panm.tasks.base import Task, collate


def attention_maps(model: PANMSeq2Seq, task: Task, example: dict) -> dict[str, torch.Tensor]:
    """Attention of each pointer for one example: name -> (T, L) weights (eval mode, base 0)."""
    batch = collate([task.encode(example)])
    model.eval()
    with torch.no_grad():
        trace = forward_batch(model.trace, batch, task.bos_id)
    maps = {
        f"mode-1 pointer {g}": trace.mode1_weights[0, :, g]
        for g in range(trace.mode1_weights.shape[2])
    }
    for h in range(trace.mode2_weights.shape[2]):
        maps[f"mode-2 pointer {h}"] = trace.mode2_weights[0, :, h]
    return maps


def draw_pointer_walk(
    model: PANMSeq2Seq, task: Task, length: int, out: str | os.PathLike, seed: int = 0
) -> Path:
    """Draws the attention maps of one fresh example of `length` into the PNG `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(model, PANMSeq2Seq):
        raise ValueError(f"viz needs a PANM model, got {type(model).__name__}")
    example = fresh_examples(task, length, 1, seed)[0]
    maps = attention_maps(model, task, example)
    fig, axes = plt.subplots(1, len(maps), figsize=(4 * len(maps), 4), squeeze=False)
    for ax, (name, weights) in zip(axes[0], maps.items(), strict=True):
        ax.imshow(weights.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_title(name)
        ax.set_xlabel("memory slot")
        ax.set_ylabel("output step")
    fig.suptitle(f"{task.name}, length {length}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
