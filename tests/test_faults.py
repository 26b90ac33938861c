"""Training under faults: kill -9 and resume, two writers of one run, a full disk."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from panm import training
from panm.checkpoint import read_index, resolve_checkpoint, run_lock
from panm.cli import main
from panm.models.registry import load_model

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = [
    "--task", "copy", "--batch-size", "8", "--valid-count", "16", "--no-progress",
    "--set", "embed_dim=8", "--set", "panm.hidden_dim=8",
    "--set", "panm.pointer_dim=8", "--set", "panm.key_dim=8", "--set", "panm.decoy_slots=2",
]  # fmt: skip


def cli_process(*args: str) -> subprocess.Popen:
    """`python -m panm ARGS` with this checkout's source first, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "panm", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def latest_step(run: Path) -> int:
    try:
        latest = json.loads((run / "checkpoint.json").read_text())["latest"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0
    return int(latest.rsplit("-", 1)[1])


class Killed(BaseException):
    """Stops training like kill -9: no handler of the loop catches it, nothing more is written."""


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(resolve_checkpoint(run, "latest") / "model.safetensors")


def assert_same_weights(run: Path, other: Path) -> None:
    weights, others = final_weights(run), final_weights(other)
    assert weights.keys() == others.keys()
    for name in weights:
        assert torch.equal(weights[name], others[name]), name


def test_stop_right_after_a_checkpoint_then_resume_reaches_the_same_weights(
    tmp_path, capsys, monkeypatch
):
    """The in-process, fast version of the kill -9 test below."""
    steps = ["--steps", "12", "--eval-every", "4"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(["train", "--out", str(whole), *steps, *TINY_TRAIN]) == 0
    real_save = training.save_checkpoint

    def save_then_die(run_dir, model, trainer_state, step, index):
        index = real_save(run_dir, model, trainer_state, step, index)
        if step == 8:
            raise Killed
        return index

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        main(["train", "--out", str(stopped), *steps, *TINY_TRAIN])
    monkeypatch.undo()
    assert latest_step(stopped) == 8
    assert main(["train", "--out", str(stopped), "--resume"]) == 0
    assert latest_step(stopped) == 12
    assert_same_weights(stopped, whole)
    metrics = [(run / "metrics.jsonl").read_text().splitlines() for run in (whole, stopped)]
    losses = [[(r["step"], r["loss"]) for r in map(json.loads, lines)] for lines in metrics]
    assert losses[0] == losses[1]  # the lost steps were redone, none logged twice


@pytest.mark.slow  # a second process imports torch: 13.5 s on the shared 2-core machine
def test_kill_9_then_resume_reaches_the_uninterrupted_weights(tmp_path, capsys):
    steps = ["--steps", "60", "--eval-every", "10"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["train", "--out", str(whole), *steps, *TINY_TRAIN]) == 0

    process = cli_process("train", "--out", str(killed), *steps, *TINY_TRAIN)
    deadline = time.monotonic() + 120
    while latest_step(killed) < 20 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted_at = latest_step(killed)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    assert 20 <= interrupted_at < 60  # killed after a checkpoint, before the end

    assert main(["train", "--out", str(killed), "--resume"]) == 0  # kill -9 released the lock
    assert latest_step(killed) == 60
    assert_same_weights(killed, whole)


def test_a_second_writer_of_one_run_gets_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    with run_lock(run):  # another writer holds the run
        code = main(["train", "--out", str(run), "--steps", "2", *TINY_TRAIN])
        err = capsys.readouterr().err
        assert code == 2
        assert err.strip().splitlines()[-1] == (
            f"panm: error: {run} is being written by another panm process (pid {os.getpid()}); "
            "wait for it to end or use another --out"
        )
        assert not (run / "run.json").exists()
    assert main(["train", "--out", str(run), "--steps", "2", *TINY_TRAIN]) == 0  # released


def test_full_disk_is_a_one_line_error_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    saves = []
    real_save = torch.save

    def fill_disk_after_the_first_checkpoint(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) > 1:
            Path(path).write_bytes(b"partial")  # a write that ran out of space half way
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fill_disk_after_the_first_checkpoint)
    code = main(["train", "--out", str(run), "--steps", "6", "--eval-every", "2", *TINY_TRAIN])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"panm: error: cannot write checkpoint {run}/checkpoints/step-")
    assert "No space left on device" in lines[-1] and "Traceback" not in err
    assert read_index(run)["latest"] == "checkpoints/step-00000002"  # the last good one
    load_model(resolve_checkpoint(run, "latest"))  # intact
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000002"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_is_a_one_line_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["train", "--out", str(locked / "run"), "--steps", "2", *TINY_TRAIN])
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2 and "Permission denied" in err and "Traceback" not in err


def test_unwritable_out_as_a_file_is_a_one_line_error(tmp_path, capsys):
    """Root writes anywhere, but not below a file: the same path through the CLI."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["train", "--out", str(blocker / "run"), "--steps", "2", *TINY_TRAIN])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("panm: error:")
    assert "Not a directory" in err and "Traceback" not in err
