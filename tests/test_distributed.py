"""Data-parallel training (DDP, gloo on CPU) equals one process on the same global batch."""

import os
import subprocess
import sys

import torch

from panm.checkpoint import resolve_checkpoint
from panm.models.registry import load_model

# Deterministic model: no base sampling, no decoys (their random draws are per process).
SETTINGS = [
    "--set", "embed_dim=16", "--set", "panm.hidden_dim=16", "--set", "panm.pointer_dim=8",
    "--set", "panm.key_dim=8", "--set", "panm.base_sampling=false", "--set", "panm.decoy_slots=0",
]  # fmt: skip
TRAIN = ["train", "--task", "reverse", "--steps", "3", "--batch-size", "8", "--eval-every", "3",
         "--valid-count", "8", "--no-progress", *SETTINGS]  # fmt: skip


def run(args, processes=1):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "panm"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}", "-m", "panm"]  # fmt: skip
    done = subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def final_weights(run_dir):
    state = load_model(resolve_checkpoint(run_dir, "latest")).state_dict()
    return torch.cat([v.flatten() for v in state.values()])


def test_two_process_ddp_matches_single_process(tmp_path):
    run([*TRAIN, "--out", str(tmp_path / "single")])
    ddp = run([*TRAIN, "--out", str(tmp_path / "ddp")], processes=2)
    assert ddp.stdout.count("trained 3 steps") == 1  # process 0 alone reports
    single, parallel = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    # Adam turns float-rounding noise in near-zero gradients into lr-sized steps, so compare
    # against what a real difference in data does: the same initial weights on other batches.
    run([*TRAIN, "--out", str(tmp_path / "other"), "--train-lengths", "2,9"])
    other = final_weights(tmp_path / "other")
    ddp_gap = (parallel - single).abs().max().item()
    data_gap = (other - single).abs().max().item()
    assert ddp_gap < 5e-4 and ddp_gap < 0.05 * data_gap, (ddp_gap, data_gap)
