"""Speed benchmark: training and evaluation throughput of PANM, the attention baseline and,
side by side, the authors' code.

`panm bench-speed [--out FILE.json] [--quick] [--device cuda] [--authors-code DIR]` runs
:func:`run_speed` and prints :func:`format_table`. In one run it measures, on Copy with
fixed-length batches:

* training throughput (sequences/s of a full step: forward, backward, gradient clipping and
  Adam, exactly as `panm.training.train` does it) of the default-recipe PANM (``panm``), the
  paper-literal PANM (``panm-paper``: GRU encoder memory, dot-product address attention, no
  decoys) and the ``attention`` baseline, all at the same width and batch size;
* evaluation throughput (no gradients, eval mode) of the same models;
* with ``--authors-code DIR``, the same two for the authors' PANM built from DIR (row
  ``authors``, see :mod:`panm.authors_code`: their model, data generator, RMSprop and clipping
  by value, at hidden size = width), timed in the same rounds as ours; without DIR there is no
  authors row and no ratio to it;
* evaluation time per sequence of PANM at growing input lengths L (T = L output steps), with the
  cost per (slot x step) normalised to the shortest length: values <= 1 mean the time grows no
  faster than L x T;
* with ``--compile [MODE]``, the same throughputs of ``torch.compile``'d copies of ``panm`` and
  ``attention`` (rows ``panm compiled``, ``attention compiled``: `nn.Module.compile` with
  `panm.training.compile_options(MODE)`; "reduce-overhead" adds CUDA graphs), timed in the
  same rounds; the compilation (their first training and first evaluation call) is timed apart
  and reported, not in the medians.

Timings of the compared configurations are interleaved (one round times every configuration in
turn) and repeated; reported figures are medians over rounds, and every raw timing is kept in the
JSON with the machine (CPU model, torch version, threads, load average before and after).
Batches are built before timing: data generation is not measured. Torch runs with one CPU
thread by default (`SpeedConfig.threads`), which is what the training commands use.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from panm.authors_code import (
    CLIP_VALUE,
    RMSPROP_ALPHA,
    RMSPROP_MOMENTUM,
    authors_copy_setup,
    load_authors_code,
)
from panm.authors_code import LEARNING_RATE as AUTHORS_LR
from panm.models.base import Seq2SeqModel
from panm.models.registry import build_model
from panm.pretrained import atomic_write
from panm.recipes import PANM_EXTRAPOLATING
from panm.tasks import Task, get_task
from panm.tasks.base import Batch
from panm.training import (
    TrainConfig,
    clip_gradients,
    compile_mode,
    compile_options,
    make_optimizer,
    sequence_loss,
    training_batch,
)

REFERENCE_MODEL = "attention"
"""The row every PANM row's step time is compared with."""

AUTHORS_ROW = "authors"
"""The row of the authors' code (present only with `SpeedConfig.authors_code`)."""

SCALING_MODEL = "panm"
"""The row whose evaluation time is measured at growing lengths."""

COMPILED_ROWS = ("panm", "attention")
"""The rows that `SpeedConfig.compile` adds compiled copies of (row name + COMPILED_SUFFIX)."""
COMPILED_SUFFIX = " compiled"

TASK = "copy"
LEARNING_RATE = 1e-3
GRAD_CLIP = 1.0


@dataclass
class SpeedConfig:
    """Settings of a speed run.

    width: embedding/hidden width of every model (PANM embed_dim and panm.hidden_dim, the
        attention baseline's hidden_dim).
    batch_size, train_length: the training and evaluation throughput batch (fixed length).
    eval_lengths, eval_batch_size: the lengths (and batch) of the evaluation-time scaling.
    warmup: untimed calls of each configuration before timing.
    repeats: timing rounds; each round times every configuration in turn (interleaved).
    calls: calls per configuration per round (their mean is one raw timing).
    scaling_repeats: timing rounds of the length scaling (one forward per length per round).
    threads: torch CPU threads during the run (None: leave torch's setting alone).
    device: "cpu", "cuda", "cuda:1", ...
    seed: seed of the model initialisations and the batches.
    extra_overrides: per-row model overrides applied last (e.g. smaller widths in tests).
    authors_code: directory of the authors' code (see `panm.authors_code`); None: no authors row.
    compile: None, or a mode of `panm.training.COMPILE_MODES`: also time copies of the
        `COMPILED_ROWS` compiled in that mode (see the module doc).
    """

    width: int = 128
    batch_size: int = 128
    train_length: int = 10
    eval_lengths: tuple[int, ...] = (11, 44, 88, 176, 352, 1000)
    eval_batch_size: int = 16
    warmup: int = 3
    repeats: int = 7
    calls: int = 5
    scaling_repeats: int = 3
    threads: int | None = 1
    device: str = "cpu"
    seed: int = 0
    extra_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    authors_code: str | None = None
    compile: str | None = None

    def __post_init__(self) -> None:
        self.eval_lengths = tuple(self.eval_lengths)
        positive = ("width", "batch_size", "train_length", "eval_batch_size", "repeats", "calls")
        for name in (*positive, "scaling_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.eval_lengths or min(self.eval_lengths) < 1:
            raise ValueError(f"eval_lengths must be positive lengths, got {self.eval_lengths}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self.compile = compile_mode(self.compile)

    @classmethod
    def quick(cls, **changes: Any) -> SpeedConfig:
        """Fewer warm-up calls and repeats: rough figures in seconds (`--quick`)."""
        return cls(**{"warmup": 1, "repeats": 3, "calls": 2, "scaling_repeats": 1, **changes})


def model_setups(width: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """Row name -> (registry model name, overrides) of the compared models at `width`."""
    # The extrapolating design (Copy's recipe until commit bd4d1e4), which every published speed
    # figure measured; today's Copy recipe adds the two output reads and a hard Mode-2 read.
    recipe = PANM_EXTRAPOLATING
    panm_width = {"embed_dim": width, "panm.hidden_dim": width}
    return {
        "panm": ("panm", {**recipe, **panm_width}),
        "panm-paper": (
            "panm",
            {
                "encoder": "gru",
                "memory_source": "encoder",
                "panm.address_similarity": "dot",
                "panm.decoy_slots": 0,
                **panm_width,
            },
        ),
        "attention": ("attention", {"hidden_dim": width}),
    }


def synchronize(device: torch.device) -> None:
    """Waits for queued kernels on `device` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_train_step(model: nn.Module, batch: Batch, task: Task) -> Callable[[], None]:
    """One training step on `batch` as `panm.training.train` does it (loss normalised by the
    target tokens, backward, gradient clipping, Adam)."""
    optimizer = make_optimizer(model, LEARNING_RATE)
    token_count = int(batch.tgt_mask.sum())

    def step() -> None:
        model.train()
        loss, _ = sequence_loss(model, batch, model.decoder_start_id(task), token_count)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, GRAD_CLIP)
        optimizer.step()

    return step


def make_eval_step(model: Seq2SeqModel, batch: Batch, task: Task) -> Callable[[], None]:
    """Greedy decoding of `batch` as evaluation does it (eval mode, no gradients; one forward
    pass for tasks without EOS, such as Copy)."""
    num_steps = batch.tgt.shape[1]

    def step() -> None:
        model.eval()
        model.generate(batch.src, batch.src_mask, num_steps, task.bos_id)

    return step


def time_interleaved(
    steps: dict[str, Callable[[], None]],
    repeats: int,
    calls: int,
    warmup: int,
    device: torch.device,
) -> dict[str, list[float]]:
    """Seconds per call of every step function, one value per round.

    Every round times each function in turn (`calls` calls, their mean is the round's value), so
    slow phases of a shared machine hit all configurations alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                step()
            synchronize(device)
            timings[name].append((time.perf_counter() - start) / calls)
    return timings


def _summary(seconds: list[float], batch_size: int) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "seconds": seconds,
        "median_seconds": median,
        "sequences_per_second": batch_size / median,
    }


def fixed_batch(task: Task, length: int, batch_size: int, seed: int) -> Batch:
    """A batch of `batch_size` examples of exactly `length`, made by the training batch maker."""
    config = TrainConfig(
        task=TASK, batch_size=batch_size, train_lengths=(length, length), seed=seed
    )
    return training_batch(task, config, 0)


def build_row(
    setups: dict[str, tuple[str, dict[str, Any]]],
    row: str,
    config: SpeedConfig,
    task: Task,
    extra: dict[str, Any] | None = None,
) -> Seq2SeqModel:
    """Model `row` of `setups` (see `model_setups`), seeded with `config.seed`, on `config.device`,
    with `extra` and then `config.extra_overrides[row]` applied on top of its overrides."""
    name, overrides = setups[row]
    torch.manual_seed(config.seed)
    overrides = {**overrides, **(extra or {}), **config.extra_overrides.get(row, {})}
    return build_model(name, task, overrides).to(config.device)


def measure_throughput(config: SpeedConfig, task: Task) -> dict[str, Any]:
    """Training and evaluation throughput of every row of `model_setups` and, with
    `config.authors_code`, of the authors' code (row `AUTHORS_ROW`), all timed in the same
    interleaved rounds (see the module doc); and the time `panm.training.training_batch` takes
    to build one batch ("data": not part of the step timings, reported to show its share of a
    training step)."""
    device = torch.device(config.device)
    setups = model_setups(config.width)
    batch = fixed_batch(task, config.train_length, config.batch_size, config.seed).to(device)
    models = {row: build_row(setups, row, config, task) for row in setups}
    train_steps = {row: make_train_step(m, batch, task) for row, m in models.items()}
    eval_steps = {row: make_eval_step(m, batch, task) for row, m in models.items()}
    rows: dict[str, dict[str, Any]] = {
        row: {
            "model": setups[row][0],
            "overrides": {**setups[row][1], **config.extra_overrides.get(row, {})},
            "parameters": sum(p.numel() for p in models[row].parameters()),
        }
        for row in setups
    }
    if config.compile:
        for row in COMPILED_ROWS:
            name = row + COMPILED_SUFFIX
            model = build_row(setups, row, config, task)
            model.compile(options=compile_options(config.compile))
            train_steps[name] = make_train_step(model, batch, task)
            eval_steps[name] = make_eval_step(model, batch, task)
            rows[name] = {**rows[row], "compile_seconds": {}}
            for phase, step in (("train", train_steps[name]), ("eval", eval_steps[name])):
                synchronize(device)
                start = time.perf_counter()
                step()  # compiles
                synchronize(device)
                rows[name]["compile_seconds"][phase] = time.perf_counter() - start
    if config.authors_code is not None:
        code = load_authors_code(config.authors_code)
        authors = authors_copy_setup(
            code, config.width, config.batch_size, config.train_length, device, config.seed
        )
        train_steps[AUTHORS_ROW], eval_steps[AUTHORS_ROW] = authors.train_step, authors.eval_step
        rows[AUTHORS_ROW] = {
            "model": "PANM of the authors' baselines/panm.py",
            "directory": str(code.directory),
            "model_sha256": code.model_sha256,
            "optimizer": (
                f"RMSprop lr {AUTHORS_LR:g} alpha {RMSPROP_ALPHA:g} momentum "
                f"{RMSPROP_MOMENTUM:g}, clip_grad_value_ {CLIP_VALUE:g}"
            ),
            "parameters": authors.parameters,
        }
    timings = {
        phase: time_interleaved(steps, config.repeats, config.calls, config.warmup, device)
        for phase, steps in (("train", train_steps), ("eval", eval_steps))
    }
    data = []
    for round_ in range(config.repeats):  # the batch generator `train` runs before every step
        start = time.perf_counter()
        fixed_batch(task, config.train_length, config.batch_size, config.seed + 1 + round_)
        data.append(time.perf_counter() - start)
    for row, entry in rows.items():
        for phase in ("train", "eval"):
            entry[phase] = _summary(timings[phase][row], config.batch_size)
    return {"data": _summary(data, config.batch_size), "models": rows}


def address_bits_for(length: int, minimum: int = 8) -> int:
    """Address bits that give at least `length` addresses (and at least `minimum` bits)."""
    return max(minimum, math.ceil(math.log2(max(length, 2))))


def measure_scaling(config: SpeedConfig, task: Task) -> dict[str, Any]:
    """Evaluation time per sequence of `SCALING_MODEL` at each of `config.eval_lengths`.

    One model (address bits enough for the longest length) decodes T = L steps. Rounds visit every
    length in turn. cost = seconds per sequence / (L x T); normalised_cost = cost / cost at the
    shortest length.
    """
    device = torch.device(config.device)
    lengths = sorted(config.eval_lengths)
    bits = address_bits_for(max(lengths))
    model = build_row(
        model_setups(config.width), SCALING_MODEL, config, task, {"panm.address_bits": bits}
    )
    steps = {
        str(length): make_eval_step(
            model, fixed_batch(task, length, config.eval_batch_size, config.seed).to(device), task
        )
        for length in lengths
    }
    shortest = steps[str(lengths[0])]
    for _ in range(config.warmup):  # the first calls are slow whatever the length
        shortest()
    timings = time_interleaved(steps, config.scaling_repeats, 1, 0, device)
    rows = []
    for length in lengths:
        per_sequence = statistics.median(timings[str(length)]) / config.eval_batch_size
        rows.append(
            {
                "length": length,
                "steps": length,
                "seconds": timings[str(length)],
                "seconds_per_sequence": per_sequence,
                "seconds_per_step": per_sequence * config.eval_batch_size / length,
                "cost_per_slot_step": per_sequence / (length * length),
            }
        )
    base = rows[0]["cost_per_slot_step"]
    for row in rows:
        row["normalised_cost"] = row["cost_per_slot_step"] / base
    return {
        "model": SCALING_MODEL,
        "address_bits": bits,
        "batch_size": config.eval_batch_size,
        "lengths": rows,
        "max_normalised_cost": max(row["normalised_cost"] for row in rows),
    }


def ratios(throughput: dict[str, Any], scaling: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios: step time of each PANM row (and the authors') / the attention
    baseline's (train and eval); our throughput / the authors' (train and eval; None without an
    authors row); and the normalised per-(slot x step) cost at each length."""
    models = throughput["models"]
    reference = models[REFERENCE_MODEL]
    compared = [row for row in models if row != REFERENCE_MODEL]
    ours = [row for row in models if row != AUTHORS_ROW]
    authors = models.get(AUTHORS_ROW)

    def over_authors(phase: str) -> dict[str, float] | None:
        if authors is None:
            return None
        return {
            row: models[row][phase]["sequences_per_second"] / authors[phase]["sequences_per_second"]
            for row in ours
        }

    return {
        "train_step_over_attention": {
            row: models[row]["train"]["median_seconds"] / reference["train"]["median_seconds"]
            for row in compared
        },
        "eval_step_over_attention": {
            row: models[row]["eval"]["median_seconds"] / reference["eval"]["median_seconds"]
            for row in compared
        },
        "train_over_authors": over_authors("train"),
        "eval_over_authors": over_authors("eval"),
        "eval_normalised_cost": {
            str(row["length"]): row["normalised_cost"] for row in scaling["lengths"]
        },
    }


def _cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on the machine), where known."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_speed(config: SpeedConfig | None = None, quick: bool = False) -> dict[str, Any]:
    """Runs the whole speed benchmark and returns its JSON-ready results (see the module doc)."""
    config = config or (SpeedConfig.quick() if quick else SpeedConfig())
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r}: no CUDA device is available")
    load_before = _load_average()
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        task = get_task(TASK)
        started = time.perf_counter()
        throughput = measure_throughput(config, task)
        scaling = measure_scaling(config, task)
        elapsed = time.perf_counter() - started
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "threads": threads,
            "device": str(device),
            "device_name": (
                torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
            ),
            "cpu": _cpu_name(),
            "load_average_before": load_before,
            "load_average_after": _load_average(),
            "quick": quick,
            "task": TASK,
            "elapsed_seconds": elapsed,
            "config": dataclasses.asdict(config),
        },
        "throughput": throughput,
        "scaling": scaling,
        "ratios": ratios(throughput, scaling),
    }


def format_table(results: dict[str, Any]) -> str:
    """A plain-text report of `run_speed` results."""
    meta, config = results["meta"], results["meta"]["config"]
    models, r = results["throughput"]["models"], results["ratios"]
    lines = [
        f"panm speed: {meta['device']} ({meta['device_name']}), {meta['threads']} thread(s), "
        f"torch {meta['torch_version']}, {meta['date']}, load average {meta['load_average_before']}"
        f" before, {meta['load_average_after']} after",
        f"Copy, input length {config['train_length']}, batch {config['batch_size']}, "
        f"width {config['width']}; medians of {config['repeats']} interleaved rounds",
        "",
        f"{'model':<19}{'params':>9}{'train ms/step':>15}{'train seq/s':>13}"
        f"{'eval ms/batch':>15}{'eval seq/s':>12}{'train x attn':>14}{'eval x attn':>13}",
    ]
    for row, m in models.items():
        train_ratio = r["train_step_over_attention"].get(row, 1.0)
        eval_ratio = r["eval_step_over_attention"].get(row, 1.0)
        lines.append(
            f"{row:<19}{m['parameters']:>9}{m['train']['median_seconds'] * 1e3:>15.1f}"
            f"{m['train']['sequences_per_second']:>13.0f}{m['eval']['median_seconds'] * 1e3:>15.1f}"
            f"{m['eval']['sequences_per_second']:>12.0f}{train_ratio:>14.2f}{eval_ratio:>13.2f}"
        )
    data = results["throughput"]["data"]
    lines.append(
        f"(building one training batch, not timed above: {data['median_seconds'] * 1e3:.1f} ms)"
    )
    for row, m in models.items():
        if "compile_seconds" in m:
            seconds = m["compile_seconds"]
            lines.append(
                f"({row}, mode {results['meta']['config']['compile']}: compiling, not timed "
                f"above: {seconds['train']:.0f} s for training, "
                f"{seconds['eval']:.0f} s for evaluation)"
            )
    lines.append("")
    if r["train_over_authors"] is None:
        lines += ["No authors row (give --authors-code DIR to time the authors' code).", ""]
    else:
        for phase in ("train", "eval"):
            lines.append(
                f"Throughput / the authors' code ({phase}): "
                + ", ".join(f"{row} {x:.2f}x" for row, x in r[f"{phase}_over_authors"].items())
            )
        lines.append("")
    scaling = results["scaling"]
    lines.append(
        f"Evaluation time per sequence, {scaling['model']} (address bits "
        f"{scaling['address_bits']}, batch {scaling['batch_size']}, T = L steps):"
    )
    lines.append(f"{'length':>8}{'ms/seq':>12}{'ms/step':>10}{'cost/(L*T) norm.':>19}")
    for row in scaling["lengths"]:
        lines.append(
            f"{row['length']:>8}{row['seconds_per_sequence'] * 1e3:>12.2f}"
            f"{row['seconds_per_step'] * 1e3:>10.3f}{row['normalised_cost']:>19.3f}"
        )
    return "\n".join(lines)


def speed_main(
    out: str | None,
    quick: bool,
    device: str,
    authors_code: str | None = None,
    compile: str | None = None,
) -> int:
    """The `panm bench-speed` command: runs the benchmark, prints the table, writes the JSON."""
    settings = {"device": device, "authors_code": authors_code, "compile": compile}
    config = SpeedConfig.quick(**settings) if quick else SpeedConfig(**settings)
    results = run_speed(config, quick=quick)
    print(format_table(results), flush=True)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: p.write_text(json.dumps(results, indent=2) + "\n"))
        print(f"wrote {path}", file=sys.stderr)
    return 0
