"""Training loop: checkpoints, resume, interruption, model selection."""

import dataclasses
import json
import random

import pytest
import torch

from panm import training
from panm.checkpoint import load_trainer_state, read_index, resolve_checkpoint
from panm.memory.panm import validation_bases
from panm.models.registry import build_model, load_model
from panm.tasks import get_task
from panm.training import (
    SPIKE_WARMUP,
    TrainConfig,
    is_gradient_spike,
    make_optimizer,
    sequence_loss,
    step_lengths,
    train,
    training_batch,
    validate,
)

TINY_PANM = {
    "embed_dim": 16,
    "encoder": "none",
    "memory_source": "embedding",
    "panm.hidden_dim": 16,
    "panm.pointer_dim": 8,
    "panm.key_dim": 8,
    "panm.address_similarity": "bitwise",
    "panm.decoy_slots": 2,
}


def tiny_config(**changes) -> TrainConfig:
    settings = dict(
        task="copy",
        model="panm",
        model_overrides=TINY_PANM,
        steps=6,
        batch_size=8,
        eval_every=3,
        log_every=1,
        valid_count=16,
    )
    settings.update(changes)
    return TrainConfig(**settings)


def weights(run_dir, which="latest"):
    return load_model(resolve_checkpoint(run_dir, which)).state_dict()


def test_train_writes_checkpoints_and_metrics(tmp_path):
    result = train(tiny_config(), tmp_path / "run", progress=False)
    assert result.step == 6
    index = read_index(tmp_path / "run")
    assert index["latest"].endswith("step-00000006")
    assert index["best"] in (index["latest"], "checkpoints/step-00000003")
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert "valid_sequence_accuracy" in lines[2] and "valid_sequence_accuracy" in lines[5]
    assert json.loads((tmp_path / "run/run.json").read_text())["steps"] == 6
    assert not list((tmp_path / "run/checkpoints").glob(".*tmp"))


def test_resume_continues_exactly(tmp_path):
    train(tiny_config(), tmp_path / "straight", progress=False)
    train(tiny_config(steps=3), tmp_path / "split", progress=False)
    result = train(tiny_config(steps=6), tmp_path / "split", resume=True, progress=False)
    assert result.step == 6
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


@pytest.mark.slow  # a cold torch.compile: 1.5-2 minutes on the shared 2-core machine
def test_compiled_training_follows_the_eager_run(tmp_path):
    # compiled as `--compile reduce-overhead --pad-multiple 16` trains on a GPU (no CUDA graphs
    # on the CPU): padded batches, and no host-side mask check inside the compiled code
    train(tiny_config(), tmp_path / "eager", progress=False)
    compiled = tiny_config(compile="reduce-overhead", pad_multiple=16)
    train(compiled, tmp_path / "compiled", progress=False)
    # Measured: compiled with torch's random numbers, |delta w| <= 4.7e-5 after 6 steps and the
    # same losses; with Inductor's own generator (fallback_random off) 1.0e-2 and 0.4% apart.
    assert_runs_agree(tmp_path / "eager", tmp_path / "compiled")


def assert_runs_agree(run_a, run_b):
    """Weights within 2e-4 and logged losses within 1e-4 (relative) of each other."""
    a, b = weights(run_a), weights(run_b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=2e-4)
    losses = [
        [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (run_a, run_b)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_interrupted_run_saves_and_resumes(tmp_path):
    def interrupt(record):
        if record["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), tmp_path / "run", progress=False, on_log=interrupt)
    assert read_index(tmp_path / "run")["latest"].endswith("step-00000004")
    train(tiny_config(), tmp_path / "run", resume=True, progress=False)
    train(tiny_config(), tmp_path / "straight", progress=False)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "run")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_existing_run_needs_resume(tmp_path):
    train(tiny_config(steps=1), tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(steps=1), tmp_path / "run", progress=False)


def test_minutes_budget_stops_training(tmp_path):
    result = train(tiny_config(steps=10_000, minutes=0.002), tmp_path / "run", progress=False)
    assert 0 < result.step < 10_000
    assert read_index(tmp_path / "run")["latest"].endswith(f"step-{result.step:08d}")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(steps=0), "steps"),
        (dict(train_lengths=(5, 2)), "train_lengths"),
        (dict(minutes=-1.0), "minutes"),
        (dict(pad_multiple=0), "pad_multiple"),
        (dict(pad_multiple=16.0), "pad_multiple"),
        (dict(skip_gradient_spikes=1.0), "skip_gradient_spikes"),
        (dict(length_warmup=(0, 10)), "length_warmup"),
        (dict(length_warmup=(3, 0)), "length_warmup"),
        (dict(length_warmup=(3, 10), train_examples=5), "length_warmup"),
        (dict(valid_base="one"), "valid_base"),
        (dict(adam_beta2=1.0), "adam_beta2"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_length_warmup_grows_the_longest_training_length():
    config = tiny_config(train_lengths=(2, 40), length_warmup=(10, 300))
    task = get_task("copy")
    # the max rises linearly from 10 (step 0) to 40 (step 300), then stays
    expected = {0: 10, 1: 10, 10: 11, 150: 25, 299: 39, 300: 40, 5000: 40}
    assert {step: step_lengths(config, task, step)[1] for step in expected} == expected
    assert {step_lengths(config, task, step)[0] for step in expected} == {2}
    batch = training_batch(task, config, 0)
    assert int(batch.tgt_mask.sum(1).max()) <= 10  # copy: the target is the sequence
    plain = tiny_config(train_lengths=(2, 40))
    assert step_lengths(plain, task, 0) == (2, 40)
    # a first max outside the training lengths is brought inside them
    assert step_lengths(tiny_config(train_lengths=(2, 8), length_warmup=(10, 300)), task, 0) == (
        2,
        8,
    )
    assert step_lengths(tiny_config(train_lengths=(5, 9), length_warmup=(1, 4)), task, 2) == (5, 7)


def test_best_checkpoint_ranks_accuracy_then_loss():
    from panm.training import _update_best

    def scores(seq, tok, loss):
        return {"valid_sequence_accuracy": seq, "valid_token_accuracy": tok, "valid_loss": loss}

    index = _update_best({}, scores(0.5, 0.9, 0.3), step=1)
    assert index["best_step"] == 1
    index = _update_best(index, scores(0.4, 0.95, 0.1), step=2)  # lower accuracy loses
    assert index["best_step"] == 1
    index = _update_best(index, scores(1.0, 1.0, 0.2), step=3)
    index = _update_best(index, scores(1.0, 1.0, 0.05), step=4)  # same accuracy, lower loss
    index = _update_best(index, scores(1.0, 1.0, 0.05), step=5)  # a tie keeps the earlier
    assert index["best_step"] == 4 and index["best"].endswith("step-00000004")


def test_multi_tensor_optimizer_step_equals_the_plain_one():
    """`make_optimizer` and `clip_gradients` (foreach) give exactly the parameters that plain
    Adam and clip_grad_norm_ give, step after step."""
    from panm.models.registry import build_model
    from panm.tasks import get_task
    from panm.training import clip_gradients, make_optimizer, training_batch

    task, config = get_task("copy"), tiny_config()
    runs = []
    for fast in (False, True):
        torch.manual_seed(0)
        model = build_model("panm", task, TINY_PANM)
        if fast:
            optimizer = make_optimizer(model, 1e-2)
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=False)
        for step in range(4):
            batch = training_batch(task, config, step)
            logits = model(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.tgt)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if fast:
                clip_gradients(model, 0.5)
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5, foreach=False)
            optimizer.step()
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name]), name


def test_a_run_stopped_by_its_time_limit_validates_its_last_step(tmp_path, monkeypatch):
    """The steps after the last validation can hold the best weights: the final checkpoint of a
    run cut short is validated and can be chosen."""
    import panm.training

    validated = []

    def improving(model, task, examples, device, *bases):  # each one better than the last
        validated.append(len(validated))
        return {"valid_sequence_accuracy": len(validated) / 10, "valid_token_accuracy": 0.5,
                "valid_loss": 1.0}  # fmt: skip

    steps_done = iter(range(100))
    monkeypatch.setattr(panm.training, "validate", improving)
    monkeypatch.setattr(panm.training, "_out_of_time", lambda *args: next(steps_done) >= 4)
    result = train(tiny_config(steps=10), tmp_path / "run", progress=False)
    assert result.step == 4 and len(validated) == 2  # at step 3 (eval_every) and at the end
    index = read_index(tmp_path / "run")
    assert index["best_step"] == 4 and index["best"] == index["latest"]
    last = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["valid_sequence_accuracy"] == 0.2  # the final validation


@pytest.mark.parametrize(
    ("given", "mode"),
    [(False, None), (True, "default"), (None, None), ("reduce-overhead", "reduce-overhead")],
)
def test_compile_setting_is_a_mode(given, mode):
    """`compile` names a mode; the booleans of run.json files written before modes still load."""
    assert tiny_config(compile=given).compile == mode


def test_unknown_compile_mode_is_rejected():
    with pytest.raises(ValueError, match="compile mode"):
        tiny_config(compile="fastest")


def test_train_command_passes_training_flags(tmp_path, monkeypatch):
    import panm.cli
    from panm.training import TrainResult

    seen = []

    def fake_train(config, run_dir, **kwargs):
        seen.append(config)
        return TrainResult(step=0, best_step=None, best_valid=None, elapsed_seconds=0.0,
                           run_dir=run_dir)  # fmt: skip

    monkeypatch.setattr(panm.cli, "train", fake_train)
    args = ["train", "--task", "copy", "--out", str(tmp_path / "r"), "--compile", "reduce-overhead"]
    assert panm.cli.main([*args, "--pad-multiple", "16"]) == 0
    assert seen[0].compile == "reduce-overhead"
    assert seen[0].pad_multiple == 16
    odds_first = ["train", "--task", "odds_first", "--out", str(tmp_path / "o")]
    assert panm.cli.main(odds_first) == 0
    assert panm.cli.main([*odds_first, "--skip-gradient-spikes", "4"]) == 0
    assert panm.cli.main([*odds_first, "--skip-gradient-spikes", "0"]) == 0
    assert [c.skip_gradient_spikes for c in seen[1:]] == [10.0, 4.0, None]  # the recipe's, set, off
    assert seen[1].valid_base == "carry"  # the recipe's
    assert panm.cli.main([*odds_first, "--valid-base", "zero"]) == 0
    assert seen[-1].valid_base == "zero"
    assert panm.cli.main([*odds_first, "--adam-beta2", "0.95"]) == 0
    assert seen[-1].adam_beta2 == 0.95
    with pytest.raises(SystemExit):  # argparse's choices
        panm.cli.main([*args, "--valid-base", "one"])
    assert panm.cli.main([*odds_first, "--length-warmup", "10,2000"]) == 0
    assert seen[-1].length_warmup == (10, 2000)
    assert panm.cli.main([*odds_first, "--length-warmup", "10"]) == 2  # a usage error


@pytest.mark.parametrize("model", ["panm", "transformer"])
def test_padding_a_batch_changes_neither_loss_nor_gradients(model):
    overrides = TINY_PANM if model == "panm" else {"d_model": 16, "ff_dim": 16, "dropout": 0.0}
    config = tiny_config(model=model, model_overrides=overrides)
    task = get_task("copy")
    torch.manual_seed(0)
    net = build_model(model, task, overrides)
    batch = training_batch(task, config, step=0)
    padded = batch.padded(16)
    assert padded.src.shape[1] == 16 and padded.tgt.shape[1] == 16 > batch.tgt.shape[1]
    results = []
    for b in (batch, padded):
        torch.manual_seed(1)  # the same base addresses and decoys for both
        net.zero_grad()
        loss, _ = sequence_loss(net, b, net.decoder_start_id(task), int(batch.tgt_mask.sum()))
        loss.backward()
        results.append((loss, [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_with_padded_batches_follows_the_plain_run(tmp_path, monkeypatch):
    import panm.training

    shapes = []

    def recording_loss(model, batch, bos_id, token_count):
        if model.training:  # training steps; validation's batches are not padded
            shapes.append((batch.src.shape[1], batch.tgt.shape[1]))
        return sequence_loss(model, batch, bos_id, token_count)

    train(tiny_config(), tmp_path / "plain", progress=False)
    monkeypatch.setattr(panm.training, "sequence_loss", recording_loss)
    train(tiny_config(pad_multiple=16), tmp_path / "padded", progress=False)
    assert len(shapes) == 6 and all(src % 16 == 0 and tgt % 16 == 0 for src, tgt in shapes)
    # Measured: the first step's loss and gradients agree to float rounding (test above);
    # Adam magnifies rounding in near-zero gradients to |delta w| <= 1e-4 after 6 steps.
    assert_runs_agree(tmp_path / "plain", tmp_path / "padded")


def test_padding_is_refused_with_randomized_positions(tmp_path):
    overrides = {"d_model": 16, "ff_dim": 16, "position": "relative", "random_positions": 64}
    config = tiny_config(model="transformer", model_overrides=overrides, pad_multiple=16)
    with pytest.raises(ValueError, match="randomized positions"):
        train(config, tmp_path / "run", progress=False)


def test_batch_padded_rounds_lengths_up_and_masks_the_padding():
    task = get_task("id_sort")  # two input fields
    batch = training_batch(task, tiny_config(task="id_sort"), step=0)
    assert batch.padded(1) is batch
    with pytest.raises(ValueError, match="multiple"):
        batch.padded(0)
    padded = batch.padded(8)
    length, steps = batch.src.shape[1], batch.tgt.shape[1]
    assert padded.src.shape == (len(batch), -(-length // 8) * 8, batch.src.shape[2])
    assert padded.src_mask.dtype == torch.bool and padded.tgt.shape[1] == -(-steps // 8) * 8
    assert torch.equal(padded.src[:, :length], batch.src)
    assert torch.equal(padded.tgt_mask[:, :steps], batch.tgt_mask)
    assert not padded.src_mask[:, length:].any() and not padded.tgt_mask[:, steps:].any()
    assert padded.padded(8).src.shape == padded.src.shape  # already a multiple: unchanged


def test_a_gradient_spike_is_a_norm_far_above_the_recent_median():
    recent = [1.0] * (SPIKE_WARMUP - 1) + [3.0]
    assert not is_gradient_spike(50.0, recent[:-1], 10.0)  # too few norms yet
    assert is_gradient_spike(10.5, recent, 10.0)  # median 1, not the mean
    assert not is_gradient_spike(9.5, recent, 10.0)
    assert not is_gradient_spike(1e9, recent, None)
    assert is_gradient_spike(float("nan"), [], 10.0) and is_gradient_spike(float("inf"), [], 10.0)


def test_a_spike_step_leaves_the_weights_and_is_counted(tmp_path, monkeypatch):
    real = training.clip_gradients
    calls = []

    def clip_with_a_spike(model, max_norm):
        calls.append(1)
        norm = real(model, max_norm)
        return norm * 1e6 if len(calls) == 25 else norm

    monkeypatch.setattr(training, "clip_gradients", clip_with_a_spike)
    settings = dict(steps=25, eval_every=25, skip_gradient_spikes=10.0)
    train(tiny_config(**settings), tmp_path / "spike", progress=False)
    calls.clear()
    train(
        tiny_config(**{**settings, "steps": 24, "eval_every": 24}),
        tmp_path / "before",
        progress=False,
    )
    a, b = weights(tmp_path / "spike"), weights(tmp_path / "before")
    for name in a:  # the 25th step's update was skipped, and only it
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    lines = [json.loads(x) for x in (tmp_path / "spike/metrics.jsonl").read_text().splitlines()]
    assert [x["skipped_steps"] for x in lines] == [0] * 24 + [1]
    assert '"skipped_steps": 0' in (tmp_path / "before/metrics.jsonl").read_text()
    plain = tmp_path / "plain"
    train(tiny_config(), plain, progress=False)
    assert "skipped_steps" not in (plain / "metrics.jsonl").read_text()


def test_the_guard_measures_unclipped_gradients_too(tmp_path):
    result = train(tiny_config(grad_clip=0.0, skip_gradient_spikes=10.0), tmp_path / "r",
                   progress=False)  # fmt: skip
    state = load_trainer_state(resolve_checkpoint(result.run_dir, "latest"))
    assert len(state["recent_gradient_norms"]) == 6 and min(state["recent_gradient_norms"]) > 0


def test_resume_keeps_the_recent_gradient_norms(tmp_path):
    config = tiny_config(steps=30, eval_every=10, skip_gradient_spikes=10.0)
    train(config, tmp_path / "straight", progress=False)
    train(dataclasses.replace(config, steps=20), tmp_path / "split", progress=False)
    train(config, tmp_path / "split", resume=True, progress=False)
    states = [
        load_trainer_state(resolve_checkpoint(tmp_path / run, "latest"))
        for run in ("straight", "split")
    ]
    assert len(states[0]["recent_gradient_norms"]) == 30
    assert states[0]["recent_gradient_norms"] == states[1]["recent_gradient_norms"]
    assert states[0]["skipped_steps"] == states[1]["skipped_steps"]


@pytest.mark.parametrize("kind", ["random", "carry"])
def test_validation_at_other_bases_is_repeatable_and_leaves_the_rng(kind):
    config = tiny_config(task="reverse", model_overrides={**TINY_PANM, "panm.address_bits": 6})
    task = get_task("reverse")
    model = build_model("panm", task, config.model_overrides).eval()
    examples = training.validation_examples(task, config)
    cpu = torch.device("cpu")
    before = torch.get_rng_state()
    first = validate(model, task, examples, cpu, kind, 4)
    assert torch.equal(torch.get_rng_state(), before)
    assert validate(model, task, examples, cpu, kind, 4) == first
    assert validate(model, task, examples, cpu, kind, 5) != first
    assert validate(model, task, examples, cpu) != first  # base 0
    assert model.memory.config.eval_base == "zero"


def test_validation_bases_reach_the_memory():
    task = get_task("copy")
    model = build_model("panm", task, {**TINY_PANM, "panm.address_bits": 8}).eval()
    batch = task.batch(random.Random(0), (5, 5), 256)
    with validation_bases(model, "random", 0):
        addresses = model.trace(batch.src, batch.src_mask, num_steps=5).addresses
    assert len(set(map(tuple, addresses[:, 0].tolist()))) > 50  # each sample's base
    with validation_bases(model, "carry", 0):
        addresses = model.trace(batch.src, batch.src_mask, num_steps=5).addresses
    values = addresses @ 2 ** torch.arange(7, -1, -1.0)  # (B, L) integer addresses
    assert (values[:, 1:] > values[:, :-1]).all()  # no wrap-around
    carries = (values[:, 1:] % 128 == 0).any(dim=1)  # onto a multiple of 128: bit 7
    assert 0.08 < carries.float().mean() < 0.25  # bit 7 chosen in 1 of 7 draws
    assert not model.trace(batch.src, batch.src_mask, num_steps=5).addresses[:, 0].any()
    with pytest.raises(ValueError, match="validation bases"):
        with validation_bases(model, "zero", 0):
            pass


def test_random_validation_bases_need_a_panm_model(tmp_path):
    with pytest.raises(ValueError, match="no PANM memory"):
        config = tiny_config(model="lstm", model_overrides={}, valid_base="random")
        train(config, tmp_path / "run", progress=False)


def test_a_run_validated_at_random_bases_trains_as_one_at_base_zero(tmp_path):
    plain = train(tiny_config(), tmp_path / "zero", progress=False)
    other = train(tiny_config(valid_base="carry"), tmp_path / "carry", progress=False)
    a, b = weights(plain.run_dir), weights(other.run_dir)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_adam_beta2_reaches_the_optimizer(tmp_path, monkeypatch):
    made = []

    def recording(model, lr, beta2=0.999):
        made.append(make_optimizer(model, lr, beta2))
        return made[-1]

    monkeypatch.setattr(training, "make_optimizer", recording)
    train(tiny_config(steps=2, adam_beta2=0.95), tmp_path / "run", progress=False)
    assert made[0].param_groups[0]["betas"] == (0.9, 0.95)


def test_the_spike_replay_repeats_the_run_and_can_change_beta2(tmp_path):
    """docs/diagnostics/gradient_spikes.py, which docs/chomsky.md quotes: from a checkpoint it
    gives the run's own losses; with --beta2 the same first step, then others."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    train(tiny_config(steps=3), tmp_path / "run", progress=False)
    shutil.copytree(tmp_path / "run", tmp_path / "at-3")  # a run keeps its best and latest
    train(tiny_config(), tmp_path / "run", resume=True, progress=False)
    script = Path(__file__).parents[1] / "docs" / "diagnostics" / "gradient_spikes.py"
    checkpoint = tmp_path / "at-3" / "checkpoints" / "step-00000003"

    def replay(*extra: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, str(script), str(checkpoint), "6", *extra],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return [line.split()[3] for line in out.splitlines() if line.startswith("step ")]

    logged = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    plain, changed = replay(), replay("--beta2", "0.5")
    assert plain == [f"{x['loss']:.3f}" for x in logged[3:6]]
    assert changed[0] == plain[0] and changed[1:] != plain[1:]


def test_the_error_positions_script_agrees_with_evaluation(tmp_path):
    """docs/diagnostics/error_positions.py, which docs/chomsky.md quotes: its share exact is
    `panm eval`'s on the same development examples, and it lists every failed example."""
    import subprocess
    import sys
    from pathlib import Path

    from panm.evaluation import evaluate_lengths

    train(tiny_config(), tmp_path / "run", progress=False)
    script = Path(__file__).parents[1] / "docs" / "diagnostics" / "error_positions.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), "copy", "12", "20"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    model = load_model(resolve_checkpoint(tmp_path / "run", "best"))
    expected = evaluate_lengths(model, get_task("copy"), [12], count=20)[12].sequence_accuracy
    assert out[0] == f"copy at length 12: {expected:.3f} exact"
    assert len(out) - 1 == round((1 - expected) * 20) > 0
