"""Training: one plain loop for every model and task, resumable, optionally data-parallel.

Data: the batch of step s is generated from (seed, s) alone, so a resumed run sees exactly the
batches it would have seen, and in data-parallel runs every process builds the same global batch
and keeps its own slice. Validation uses held-out examples of the *training* lengths only; the
"best" checkpoint is the earliest with the highest validation (sequence, token) accuracy. Test
lengths are never looked at during training.

Data-parallel: under `torchrun --nproc_per_node=N`, each process trains on batch_size / N
examples of the global batch with DistributedDataParallel (gloo on CPU, NCCL on GPU). The loss is
normalised by the global number of target tokens, so gradients equal those of one process on
the whole batch. Process 0 alone validates, logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from panm.checkpoint import (
    load_trainer_state,
    read_index,
    resolve_checkpoint,
    run_lock,
    save_checkpoint,
)
from panm.evaluation import accuracy, batch_correct
from panm.memory.panm import EVAL_BASES, panm_memories, validation_bases
from panm.models.base import Seq2SeqModel, forward_batch
from panm.models.registry import build_model, load_model
from panm.pretrained import atomic_write, config_from_dict
from panm.tasks import Task, get_task
from panm.tasks.base import Batch, EncodedExample, collate

RUN_CONFIG = "run.json"
METRICS = "metrics.jsonl"


NO_STEP_LIMIT = 10**9
"""A step budget this large means none: the `minutes` budget alone ends the run."""


COMPILE_MODES = ("default", "reduce-overhead")


def compile_options(mode: str = "default") -> dict[str, Any]:
    """`torch.compile` options of a compile mode (one of `COMPILE_MODES`).

    fallback_random: the compiled model draws its random numbers (base addresses, decoy slots)
    from torch's generator, as the eager one does, so a seed gives the same run.
    "reduce-overhead" adds CUDA graphs (`triton.cudagraphs`, what torch's mode of that name
    sets; `torch.compile` takes a mode or options, not both): on a GPU a PANM step is bound by
    kernel launches. On the CPU it compiles as "default".
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    options: dict[str, Any] = {"fallback_random": True}
    if mode == "reduce-overhead":
        options["triton.cudagraphs"] = True
    return options


def compile_mode(setting: bool | str | None) -> str | None:
    """A `compile` setting as a mode of `COMPILE_MODES` or None (off); True / False, as files
    written before compile modes hold it, mean "default" / off. Raises ValueError if unknown."""
    if isinstance(setting, bool):
        return "default" if setting else None
    if setting is not None:
        compile_options(setting)
    return setting


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as DIR/run.json).

    task, task_options: the task name and its constructor options (e.g. {"split": "length"}).
    model, model_overrides: the model name and config overrides ("panm.decoy_slots": 8, ...).
    steps: optimisation steps; minutes: optional wall-clock budget (whichever ends first;
        time spent before a resume counts).
    train_lengths: (min, max) main-sequence length of training examples (task default if None).
    length_warmup: (first_max, warmup_steps): the longest training length starts at first_max
        (within train_lengths) and grows linearly to train_lengths' max by step warmup_steps, so
        that a model first meets short sequences (validation keeps every training length);
        None: every length from the first step. Not with a fixed training set (train_examples).
    train_examples: a fixed training set of this many examples, drawn once from the seed, from
        which every batch samples (as when fine-tuning on a data set; a frozen LM then computes
        its states once per example); None: fresh examples at every step.
    valid_count: held-out validation examples of training lengths, evaluated every eval_every.
    compile: None, or a mode of `COMPILE_MODES`: `torch.compile` the model in that mode
        ("reduce-overhead" adds CUDA graphs on a GPU).
    pad_multiple: pad every training batch's input and target lengths up to a multiple of
        this (`Batch.padded`; 1: no padding), so that a compiled model meets a few shapes, not
        one per batch: CUDA graphs record a graph per shape. Padding is masked: without
        dropout the loss and gradients do not change (tests/test_training.py); with dropout the
        random masks are drawn over the padded shape, so a padded run draws differently (same
        distribution, another run). Not allowed with randomized positions (`random_positions`),
        whose draw would spread over the padding instead of the tokens.
    skip_gradient_spikes: skip the update of a step whose gradient norm (before clipping) is
        not finite or is above this many times the median norm of the last `SPIKE_WINDOW`
        steps (once there are `SPIKE_WARMUP` of them); its batch is not drawn again. None:
        never (why it exists: docs/chomsky.md, "Gradient spikes").
    valid_base: the base addresses at which a PANM model decodes the validation examples:
        "zero" (as at test), "random" (uniform per example) or "carry" (per example, one that
        puts a carry into a uniformly chosen address bit inside it; see
        `PANMConfig.eval_base`); the same bases at every validation, drawn from the run's seed
        (`validation_bases`), so that the checkpoint chosen must carry across the address bits
        that long test sequences reach and short ones at base 0 do not. Not "zero": needs a
        model with a PANM memory.
    adam_beta2: Adam's second-moment decay. PyTorch's 0.999 averages squared gradients over
        about 1,000 steps, so one gradient in a coordinate that was quiet for that long moves
        it by about 3 learning rates at once and about 30 in all as its momentum decays; with
        0.95 (about 20 steps), by about 0.45 and 6 (why it matters: docs/chomsky.md,
        "Gradient spikes").
    """

    task: str = "copy"
    model: str = "panm"
    task_options: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    minutes: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    grad_clip: float = 1.0
    train_lengths: tuple[int, int] | None = None
    length_warmup: tuple[int, int] | None = None
    train_examples: int | None = None
    valid_count: int = 500
    eval_every: int = 250
    log_every: int = 25
    seed: int = 0
    device: str = "cpu"
    compile: str | None = None
    pad_multiple: int = 1
    skip_gradient_spikes: float | None = None
    valid_base: str = "zero"
    adam_beta2: float = 0.999

    def __post_init__(self) -> None:
        self.compile = compile_mode(self.compile)
        if not isinstance(self.pad_multiple, int) or self.pad_multiple < 1:
            raise ValueError(f"pad_multiple must be an integer >= 1, got {self.pad_multiple!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.train_examples is not None and self.train_examples < 1:
            raise ValueError(f"train_examples must be >= 1, got {self.train_examples}")
        if self.skip_gradient_spikes is not None and self.skip_gradient_spikes <= 1:
            raise ValueError(
                f"skip_gradient_spikes must be > 1 (or None), got {self.skip_gradient_spikes}"
            )
        if not 0.0 < self.adam_beta2 < 1.0:
            raise ValueError(f"adam_beta2 must be in (0, 1), got {self.adam_beta2}")
        if self.valid_base not in EVAL_BASES:
            raise ValueError(
                f"valid_base must be one of {', '.join(EVAL_BASES)}, got {self.valid_base!r}"
            )
        if self.batch_size < 1 or self.eval_every < 1 or self.log_every < 1:
            raise ValueError("batch_size, eval_every and log_every must be >= 1")
        if self.train_lengths is not None:
            self.train_lengths = tuple(self.train_lengths)  # type: ignore[assignment]
            low, high = self.train_lengths
            if not 1 <= low <= high:
                raise ValueError(f"train_lengths must be 1 <= min <= max, got {self.train_lengths}")
        if self.length_warmup is not None:
            self.length_warmup = tuple(self.length_warmup)  # type: ignore[assignment]
            first_max, warmup_steps = self.length_warmup
            if first_max < 1 or warmup_steps < 1:
                raise ValueError(
                    f"length_warmup must be (first_max >= 1, steps >= 1), got {self.length_warmup}"
                )
            if self.train_examples is not None:
                raise ValueError("length_warmup needs fresh examples: not with train_examples")


@dataclass
class TrainResult:
    step: int
    best_step: int | None
    best_valid: dict[str, float] | None
    elapsed_seconds: float
    run_dir: Path
    rank: int = 0  # this process's rank in data-parallel training (0 reports)


def lengths_for(config: TrainConfig, task: Task) -> tuple[int, int]:
    return config.train_lengths or task.default_train_lengths


def training_set(task: Task, config: TrainConfig) -> list[EncodedExample]:
    """The fixed training set of `config.train_examples` encoded examples (a function of the
    seed only)."""
    assert config.train_examples is not None
    rng = random.Random(f"train-set/{config.seed}")
    low, high = lengths_for(config, task)
    low = max(low, task.min_length())
    return [
        task.encode(task.training_sample(rng, rng.randint(low, high)))
        for _ in range(config.train_examples)
    ]


def step_lengths(config: TrainConfig, task: Task, step: int) -> tuple[int, int]:
    """(min, max) lengths of the training batch of `step` (0-based): `lengths_for`, with the max
    lowered before the end of `config.length_warmup`."""
    low, high = lengths_for(config, task)
    if config.length_warmup is None:
        return low, high
    first_max, warmup_steps = config.length_warmup
    first_max = min(max(first_max, low), high)  # a recipe's warmup fits any training lengths
    return low, first_max + (high - first_max) * min(step, warmup_steps) // warmup_steps


def training_batch(
    task: Task, config: TrainConfig, step: int, train_set: list[EncodedExample] | None = None
) -> Batch:
    """The global batch of `step`: a function of (seed, step) only; drawn with replacement from
    `train_set` (`training_set`) when the config has a fixed training set."""
    rng = random.Random(f"train/{config.seed}/{step}")
    if config.train_examples is None:
        return task.batch(rng, step_lengths(config, task, step), config.batch_size)
    if train_set is None:
        raise ValueError("this config trains on a fixed set: pass training_set(task, config)")
    return collate([train_set[rng.randrange(len(train_set))] for _ in range(config.batch_size)])


def validation_examples(task: Task, config: TrainConfig) -> list[dict]:
    valid = task.examples("valid")  # data-set tasks (SCAN) have their own held-out part
    if valid:
        return valid[: config.valid_count]
    rng = random.Random(f"valid/{config.seed}")
    low, high = lengths_for(config, task)
    low = max(low, task.min_length())
    return [task.sample(rng, rng.randint(low, high)) for _ in range(config.valid_count)]


def sequence_loss(model: nn.Module, batch: Batch, bos_id: int | None, token_count: int) -> tuple:
    """Summed token cross entropy / `token_count`, and the logits (B, T, V).

    bos_id: the model's `decoder_start_id(task)` (None: decode without token input)."""
    logits = forward_batch(model, batch, bos_id)
    losses = nn.functional.cross_entropy(logits.transpose(1, 2), batch.tgt, reduction="none")
    return (losses * batch.tgt_mask).sum() / token_count, logits


def make_optimizer(model: nn.Module, lr: float, beta2: float = 0.999) -> torch.optim.Optimizer:
    """Adam over every parameter (betas (0.9, beta2)). foreach=True updates all parameters with
    one multi-tensor op per formula term instead of one op per parameter (the default on GPUs,
    not on the CPU): the same numbers, fewer small ops."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, beta2), foreach=True)


def clip_gradients(model: nn.Module, max_norm: float) -> Tensor:
    """Scales the gradients to a total norm of at most `max_norm` (multi-tensor, as above; 0:
    no clipping) and returns their total norm before, a 0-dim tensor."""
    return nn.utils.clip_grad_norm_(model.parameters(), max_norm or math.inf, foreach=True)


SPIKE_WINDOW, SPIKE_WARMUP = 100, 20


def is_gradient_spike(norm: float, recent: list[float], factor: float | None) -> bool:
    """Whether a step's gradient norm is not finite, or above `factor` times the median of
    `recent`, the finite norms of the last `SPIKE_WINDOW` steps, once there are `SPIKE_WARMUP`
    of them (TrainConfig's `skip_gradient_spikes`; None: never)."""
    if factor is None:
        return False
    if not math.isfinite(norm):
        return True
    return len(recent) >= SPIKE_WARMUP and norm > factor * statistics.median(recent)


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group), initialising the
    group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    created = not dist.is_initialized()
    if created:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), world, created


def read_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in a run directory's run.json."""
    stored = Path(run_dir) / RUN_CONFIG
    if not stored.is_file():
        raise FileNotFoundError(f"{stored} not found: not a training run")
    try:
        return config_from_dict(TrainConfig, json.loads(stored.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{stored} is corrupt: {error}") from error


def prepare_run(run_dir: Path, config: TrainConfig, resume: bool) -> TrainConfig:
    """Checks the run directory and writes (or, on resume, reads) its run.json.

    On resume the stored config is used; only `steps` and `minutes` may be raised.
    """
    if resume:
        saved = read_run_config(run_dir)
        return dataclasses.replace(saved, steps=config.steps, minutes=config.minutes)
    if (run_dir / RUN_CONFIG).exists():
        raise FileExistsError(f"{run_dir} already holds a run; use --resume or another --out")
    return config


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    on_log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Trains `config.model` on `config.task`, writing checkpoints and metrics to `run_dir`.

    Only one process may write a run directory at a time (`panm.checkpoint.run_lock`).
    """
    run_dir = Path(run_dir)
    rank, world, created_group = _distributed()
    try:
        if rank != 0:  # process 0 alone writes the run directory
            result = _train(config, run_dir, resume, progress, on_log, rank, world)
        else:
            with run_lock(run_dir):
                result = _train(config, run_dir, resume, progress, on_log, rank, world)
        if world > 1:  # process 0 validates and saves after the last step: wait for it
            dist.barrier()
        return result
    finally:
        # A process that exits with the group alive, or tears it down while another process
        # still works, can abort in gloo's threads ("terminate called without an active
        # exception"), failing the whole launch.
        if created_group:
            dist.destroy_process_group()


def _train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    progress: bool,
    on_log: Callable[[dict], None] | None,
    rank: int,
    world: int,
) -> TrainResult:
    config = prepare_run(run_dir, config, resume)
    if world > 1:
        dist.barrier()  # every process checks the run directory before process 0 writes to it
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes")
    device = torch.device(config.device)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    task = get_task(config.task, **config.task_options)

    index = read_index(run_dir) if resume else {}
    if resume and "latest" in index:
        folder = resolve_checkpoint(run_dir, "latest")
        model = load_model(folder, map_location=str(device))
        state = load_trainer_state(folder)
    else:
        torch.manual_seed(config.seed)
        model = build_model(config.model, task, config.model_overrides).to(device)
        state = {}
    if config.pad_multiple > 1 and getattr(model.config, "random_positions", 0):
        raise ValueError("pad_multiple > 1 cannot be used with randomized positions")
    if config.valid_base != "zero":
        panm_memories(model)  # a model without one fails now, not at its first validation
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(
            run_dir / RUN_CONFIG,
            lambda p: p.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n"),
        )
    optimizer = make_optimizer(model, config.lr, config.adam_beta2)
    step = 0
    elapsed = 0.0
    guard = config.skip_gradient_spikes is not None
    recent_norms: list[float] = []
    skipped_steps = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_seconds"]
        torch.set_rng_state(state["rng"])
        recent_norms = state.get("recent_gradient_norms", [])
        skipped_steps = state.get("skipped_steps", 0)
    else:
        torch.manual_seed(config.seed + 1)
    if rank == 0:
        _truncate_metrics(run_dir / METRICS, step)

    if rank == 0 and progress:
        print(f"{config.model}: {model.num_parameters():,} parameters", file=sys.stderr)
    trained: nn.Module = model
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(model)
    if config.compile:
        trained = torch.compile(trained, options=compile_options(config.compile))  # type: ignore[assignment]
    valid = validation_examples(task, config) if rank == 0 else []
    train_set = training_set(task, config) if config.train_examples else None
    bos_id = model.decoder_start_id(task)
    writer = _tensorboard(run_dir) if rank == 0 else None
    limit = f", <= {config.minutes:g} min" if config.minutes else ""
    bar = tqdm(
        total=None if config.steps >= NO_STEP_LIMIT else config.steps,
        initial=step,
        disable=not progress or rank != 0,
        desc=f"{config.model} on {config.task}{limit}",
        unit=" steps",
        dynamic_ncols=True,
    )
    model.train()
    started = time.monotonic() - elapsed
    budget = config.minutes * 60 if config.minutes else math.inf

    def checkpoint() -> None:
        nonlocal index
        if rank == 0:
            trainer_state = {
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed_seconds": time.monotonic() - started,
                "rng": torch.get_rng_state(),
                "recent_gradient_norms": recent_norms,
                "skipped_steps": skipped_steps,
            }
            index = save_checkpoint(run_dir, model, trainer_state, step, index)

    try:
        while step < config.steps and not _out_of_time(started, budget, world, device):
            batch = training_batch(task, config, step, train_set)
            batch = batch.padded(config.pad_multiple).to(device)
            part = shard_batch(batch, rank, world)
            loss, logits = sequence_loss(trained, part, bos_id, int(batch.tgt_mask.sum()))
            optimizer.zero_grad(set_to_none=True)
            (loss * world).backward()
            if config.grad_clip or guard:
                norm = clip_gradients(model, config.grad_clip)
            value = float(norm) if guard else 0.0
            spike = is_gradient_spike(value, recent_norms, config.skip_gradient_spikes)
            if not spike:
                optimizer.step()
            if guard and math.isfinite(value):
                recent_norms = [*recent_norms, value][-SPIKE_WINDOW:]
            skipped_steps += spike
            step += 1
            bar.update(1)
            if rank == 0 and (step % config.log_every == 0 or step % config.eval_every == 0):
                exact, _ = batch_correct(logits.argmax(-1), part)
                record: dict[str, Any] = {
                    "step": step,
                    "loss": loss.item() * world,
                    "train_sequence_accuracy": float(exact.float().mean()),
                    "elapsed_seconds": round(time.monotonic() - started, 2),
                }
                if guard:
                    record["skipped_steps"] = skipped_steps
                evaluate = step % config.eval_every == 0 or step == config.steps
                if evaluate:
                    scores = validate(model, task, valid, device, config.valid_base, config.seed)
                    record.update(scores)
                    index = _update_best(index, scores, step)
                # Logged before its checkpoint: a crash in between redoes the step (its line is
                # dropped on resume), one after it keeps both.
                _log(run_dir, record, writer, on_log)
                if evaluate:
                    checkpoint()
                bar.set_postfix(
                    loss=f"{record['loss']:.3f}",
                    acc=f"{record['train_sequence_accuracy']:.2f}",
                    valid=f"{index['best_valid'][0]:.2f}" if "best_valid" in index else "-",
                )
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        bar.close()
    if rank == 0 and (index.get("latest") != f"checkpoints/step-{step:08d}"):
        # The run ended between validations (its time limit, or a step budget that is not a
        # multiple of eval_every and log_every): its last steps may be its best.
        scores = validate(model, task, valid, device, config.valid_base, config.seed)
        index = _update_best(index, scores, step)
        seconds = round(time.monotonic() - started, 2)
        _log(run_dir, {"step": step, "elapsed_seconds": seconds, **scores}, writer, on_log)
        checkpoint()
    if writer is not None:
        writer.close()
    best = index.get("best_valid")
    return TrainResult(
        step=step,
        best_step=index.get("best_step"),
        best_valid=dict(zip(VALID_KEYS, best, strict=True)) if best else None,
        elapsed_seconds=time.monotonic() - started,
        run_dir=run_dir,
        rank=rank,
    )


VALID_KEYS = ("valid_sequence_accuracy", "valid_token_accuracy", "valid_loss")
VALID_CHUNK = 256  # validation examples per forward pass


@torch.no_grad()
def validate(
    model: Seq2SeqModel,
    task: Task,
    examples: list[dict],
    device: torch.device,
    base: str = "zero",
    base_seed: int = 0,
) -> dict[str, float]:
    """Validation accuracy and loss (mean token cross entropy) on held-out training lengths,
    PANM's bases those of `base` (see `TrainConfig.valid_base`), drawn from `base_seed`: the
    same base for an example in both, as both decode the same chunks in the same order."""

    def bases() -> contextlib.AbstractContextManager:
        if base == "zero":
            return contextlib.nullcontext()
        return validation_bases(model, base, base_seed)

    with bases():
        result = accuracy(model, task, examples, VALID_CHUNK, device)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with bases():
        for start in range(0, len(examples), VALID_CHUNK):
            chunk = examples[start : start + VALID_CHUNK]
            batch = collate([task.encode(e) for e in chunk]).to(device)
            count = int(batch.tgt_mask.sum())
            loss, _ = sequence_loss(model, batch, model.decoder_start_id(task), count)
            total, tokens = total + loss.item() * count, tokens + count
    model.train(was_training)
    values = (result.sequence_accuracy, result.token_accuracy, total / tokens)
    return dict(zip(VALID_KEYS, values, strict=True))


def _update_best(index: dict[str, Any], scores: dict[str, float], step: int) -> dict[str, Any]:
    """The checkpoint index with `step` as "best" if it beats the best so far.

    Ranked by validation sequence accuracy, then token accuracy, then lower loss: once
    accuracy saturates on training lengths, a lower loss means sharper, more confident
    pointers, which is what carries over to longer sequences.
    """
    key = [scores["valid_sequence_accuracy"], scores["valid_token_accuracy"], -scores["valid_loss"]]
    best = index.get("best_valid")
    if best is not None and key <= [best[0], best[1], -best[2]]:
        return index
    values = [scores[k] for k in VALID_KEYS]
    return {
        **index,
        "best_valid": values,
        "best_step": step,
        "best": f"checkpoints/step-{step:08d}",
    }


def shard_batch(batch: Batch, rank: int, world: int) -> Batch:
    if world == 1:
        return batch
    size = len(batch) // world
    part = slice(rank * size, (rank + 1) * size)
    return Batch(batch.src[part], batch.src_mask[part], batch.tgt[part], batch.tgt_mask[part])


def _out_of_time(started: float, budget: float, world: int, device: torch.device) -> bool:
    """Whether the time budget is spent, decided by process 0 for all processes."""
    over = time.monotonic() - started >= budget
    if world > 1:
        flag = torch.tensor([float(over)], device=device)
        dist.broadcast(flag, src=0)
        over = bool(flag.item())
    return over


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops metric lines logged after `step` (work lost in an interruption is redone)."""
    if not path.exists():
        return
    kept = [
        line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step
    ]
    atomic_write(path, lambda p: p.write_text("".join(line + "\n" for line in kept)))


def _log(run_dir: Path, record: dict, writer: Any, on_log: Callable[[dict], None] | None) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
    if writer is not None:
        for key, value in record.items():
            if key != "step":
                writer.add_scalar(key, value, record["step"])
    if on_log is not None:
        on_log(record)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
