"""The benchmark matrix: every (task, model or variant, seed) run, trained, tested and reported.

A :class:`BenchConfig` (a JSON file, or the :data:`QUICK` preset) names tasks, models, named
variants (ablations, e.g. PANM without base sampling) and seeds. :func:`run_bench` trains each
run with the model's default recipe (:func:`panm.recipes.default_train_config`) updated with the
bench settings, tests its best checkpoint (chosen on training-length validation only) at every
test length, and keeps everything on disk::

    OUT/bench.json                                the BenchConfig of the latest run_bench
    OUT/runs/<task>/<row>/seed-<s>/               the training run (see panm.checkpoint)
    OUT/runs/<task>/<row>/seed-<s>/result.json    its raw result, written last, atomically
    OUT/runs/<task>/<row>/seed-<s>/error.txt      the traceback of its latest failed attempt
    OUT/results.{json,csv,md}, OUT/plot_<task>.png    the report (panm.report)

A run's result.json is small and self-contained (resolved model and training configs, the code's
git commit, the machine, steps, seconds, the test set's name and seed, examples and scores per
length): published tables keep these files, without checkpoints, under docs/<bench>/runs/ and
are generated from them (`panm report`, see panm.report).

A *row* is a model name or a variant name. Runs are resumable: a run whose result.json was made
with the same settings is not recomputed; any other run whose directory holds a run is resumed
(its training continues from the latest checkpoint, or ends at once if already complete, and it is
tested again). A run may be resumed under other evaluation-only model settings
(:data:`panm.models.registry.EVALUATION_SETTINGS`): it is then tested with the new ones (its
best checkpoint stays the one its own validation chose, under the settings it trained with). Runs
execute `jobs` at a time, each in its own spawned process with one torch thread; a failed run is
recorded and reported at the end, and the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch

from panm.checkpoint import load_checkpoint_model
from panm.evaluation import TEST_SETS, evaluate_lengths, seed_of_test_set
from panm.models.registry import (
    MODEL_NAMES,
    evaluation_settings,
    model_config,
    with_overrides,
)
from panm.pretrained import atomic_write, config_from_dict
from panm.recipes import default_train_config
from panm.report import format_duration, write_report
from panm.tasks import TASK_NAMES, get_task
from panm.tasks.algorithmic import is_int
from panm.training import NO_STEP_LIMIT, RUN_CONFIG, TrainConfig, train

RESULT_NAME = "result.json"
ERROR_NAME = "error.txt"
CONFIG_NAME = "bench.json"
MANAGED_TRAIN_FIELDS = frozenset(
    {"task", "model", "seed", "steps", "minutes", "batch_size", "model_overrides"}
)
"""TrainConfig fields the bench sets itself (not allowed in `train_options`)."""
_ROW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")

# Checks of config values, with messages that name the setting (used by BenchConfig).


def _check_names(what: str, names: Any, known: tuple[str, ...]) -> None:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{what} must be a list of names, got {names!r}")
    for name in names:
        if name not in known:
            raise ValueError(f"{what}: unknown name {name!r}; choose from: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} lists a name twice: {names}")


def _check_int_list(what: str, values: Any, minimum: int | None) -> None:
    if not isinstance(values, list) or not all(is_int(v) for v in values):
        raise ValueError(f"{what} must be a list of integers, got {values!r}")
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{what} must be >= {minimum}, got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a value twice: {values}")


def _check_number(
    what: str, value: Any, kind: type | tuple[type, ...], minimum: float, strict: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{what} must be {'>' if strict else '>='} {minimum}, got {value}")


def _check_mapping(what: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {value!r}")


def _check_variant(name: Any, variant: Any) -> None:
    if not isinstance(name, str) or not _ROW_NAME.fullmatch(name):
        raise ValueError(f"variant name {name!r} must be letters, digits and _ . + - only")
    if name in MODEL_NAMES:
        raise ValueError(f"variant name {name!r} is a model name; choose another")
    _check_mapping(f"variants[{name!r}]", variant)
    unknown = sorted(set(variant) - {"model", "overrides"})
    if unknown:
        raise ValueError(f"variants[{name!r}]: unknown key(s) {unknown}; known: model, overrides")
    if variant.get("model") not in MODEL_NAMES:
        raise ValueError(
            f"variants[{name!r}]: model must be one of: {', '.join(MODEL_NAMES)}, "
            f"got {variant.get('model')!r}"
        )
    _check_mapping(f"variants[{name!r}].overrides", variant.get("overrides", {}))


@dataclass
class BenchConfig:
    """What to benchmark (saved as OUT/bench.json; read from JSON with :func:`load_config`).

    tasks, models: task names and model names (see `panm.tasks`, `panm.models.registry`).
    seeds: training seeds; every (task, row) is trained once per seed.
    steps, minutes: the per-run budget (whichever ends first). steps None: the recipe's steps,
        or no step limit when `minutes` is given. For results that do not depend on the
        machine's speed, give steps and make minutes only a generous safety limit (a run it
        stops is marked in its result and in the report).
    task_steps: task name -> its step budget, replacing `steps` for every run on that task
        (tasks differ in what a step costs and how many steps they need).
    model_steps: model name -> its step budget, replacing `steps` and `task_steps` for every
        row of that model (e.g. a slower baseline that fits its training data in fewer steps).
    batch_size: training batch size (None: the recipe's).
    test_lengths: test lengths (None: each task's default); test_count: examples per length.
    test_set: "dev" (the default: for exploring) or "final" (for published tables only); see
        panm.evaluation.TEST_SETS.
    model_overrides: model name -> model settings merged over the recipe's, for every row of
        that model (variants included), e.g. {"lstm": {"hidden_dim": 256}}.
    variants: extra rows, name -> {"model": NAME, "overrides": {...}}; the overrides are merged
        last, e.g. {"panm-no-base-sampling": {"model": "panm",
        "overrides": {"panm.base_sampling": false}}}.
    train_options: other TrainConfig fields for every run (lr, eval_every, valid_count,
        train_lengths, task_options, device, ...). task_options given here replace a recipe's
        (PANM's id sort recipe sets {"close_ids": 0.5}; {} trains on the plain task).
    splits: for data-set tasks (SCAN), the splits to run each task on (e.g. ["cutoff-22",
        "cutoff-26"]). Each (task, split) is a table of its own, named "<task>-<split>" in the
        report and the run directories; the report adds a table of whole-test-set accuracy by
        split. None: the one split of `train_options["task_options"]` (or the task's default).
    """

    tasks: list[str]
    models: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int | None = None
    minutes: float | None = None
    batch_size: int | None = None
    test_lengths: list[int] | None = None
    test_count: int = 500
    test_set: str = "dev"
    task_steps: dict[str, int] = field(default_factory=dict)
    model_steps: dict[str, int] = field(default_factory=dict)
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)
    splits: list[str] | None = None

    def __post_init__(self) -> None:
        _check_names("tasks", self.tasks, TASK_NAMES)
        if not self.tasks:
            raise ValueError("tasks must list at least one task")
        _check_names("models", self.models, MODEL_NAMES)
        _check_int_list("seeds", self.seeds, minimum=None)
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if self.steps is not None:
            _check_number("steps", self.steps, int, minimum=1)
        if self.minutes is not None:
            _check_number("minutes", self.minutes, (int, float), minimum=0, strict=True)
        if self.batch_size is not None:
            _check_number("batch_size", self.batch_size, int, minimum=1)
        if self.test_lengths is not None:
            _check_int_list("test_lengths", self.test_lengths, minimum=1)
            if not self.test_lengths:
                raise ValueError("test_lengths must list at least one length (or be null)")
        _check_number("test_count", self.test_count, int, minimum=1)
        if self.test_set not in TEST_SETS:
            known = ", ".join(TEST_SETS)
            raise ValueError(f"test_set must be one of: {known}, got {self.test_set!r}")
        for what, budgets, names in (
            ("task_steps", self.task_steps, self.tasks),
            ("model_steps", self.model_steps, MODEL_NAMES),
        ):
            _check_mapping(what, budgets)
            for name, steps in budgets.items():
                if name not in names:
                    raise ValueError(
                        f"{what}: {name!r} is not among the {what[:-6]}s it can budget: "
                        f"{', '.join(names)}"
                    )
                _check_number(f"{what}[{name!r}]", steps, int, minimum=1)
        _check_mapping("model_overrides", self.model_overrides)
        for name, overrides in self.model_overrides.items():
            if name not in MODEL_NAMES:
                known = ", ".join(MODEL_NAMES)
                raise ValueError(f"model_overrides: unknown model {name!r}; choose from: {known}")
            _check_mapping(f"model_overrides[{name!r}]", overrides)
        _check_mapping("variants", self.variants)
        for name, variant in self.variants.items():
            _check_variant(name, variant)
        if not self.models and not self.variants:
            raise ValueError("give at least one model or variant")
        _check_mapping("train_options", self.train_options)
        known = {f.name for f in dataclasses.fields(TrainConfig)} - MANAGED_TRAIN_FIELDS
        for key in self.train_options:
            if key not in known:
                raise ValueError(
                    f"train_options: unknown or bench-managed setting {key!r}; "
                    f"known: {', '.join(sorted(known))}"
                )
        if self.splits is not None:
            names = self.splits
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"splits must be a list of split names, got {names!r}")
            if not names or len(set(names)) != len(names):
                raise ValueError(f"splits must list distinct split names, got {names}")
            if "split" in self.train_options.get("task_options", {}):
                raise ValueError("give the split either in splits or in task_options, not both")

    @classmethod
    def from_dict(cls, data: Any) -> BenchConfig:
        """The config of a JSON object; unknown keys and missing required ones are errors."""
        if not isinstance(data, dict):
            raise ValueError(f"a bench config must be a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown bench setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(fields)}"
            )
        missing = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and name not in data
        ]
        if missing:
            raise ValueError(f"missing bench setting(s): {', '.join(missing)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def task_entries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(table name, task name, task options) of every task, split by split."""
        options = self.train_options.get("task_options", {})
        if self.splits is None:
            return [(name, name, dict(options)) for name in self.tasks]
        return [
            (f"{name}-{split}", name, {**options, "split": split})
            for name in self.tasks
            for split in self.splits
        ]

    def rows(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(row name, model name, variant overrides) of every row: models first, then variants."""
        plain = [(model, model, {}) for model in self.models]
        extra = [
            (name, v["model"], dict(v.get("overrides", {}))) for name, v in self.variants.items()
        ]
        return plain + extra


QUICK = BenchConfig(
    tasks=["copy", "reverse"],
    models=["panm", "lstm", "attention", "transformer"],
    seeds=[0],
    steps=5000,
    model_steps={"panm": 10000, "transformer": 2000},
    minutes=60.0,
    test_lengths=[11, 22, 44, 88],
    test_count=200,
    test_set="final",
)
"""The quick bench (also configs/quick.json), the README's table: 8 runs of 5,000 steps (PANM
10,000, its budget in every published PANM table: with today's Copy recipe 5,000 steps gave
95.5% at 88, docs/quick_5000_steps; the Transformer 2,000: its steps cost
1.7 times PANM's, and its validation reached 100% by step 1,500 in the earlier 3-minute runs),
so the rows do not depend on the machine's speed. 60 minutes
per run is only a safety limit: a run's steps take about 2-5 minutes on one core of this
project's CPU beside one other job (from per-step times), and took up to 17.5 minutes under a
load average of 6-9 on its two cores. Scored on the final test set."""


def load_config(path: str | os.PathLike) -> BenchConfig:
    """Reads a bench config JSON file; ValueError (naming the file) if it is not valid."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bench config {path} not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    try:
        return BenchConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


@dataclass(frozen=True)
class RunSpec:
    """One run of the matrix: its training config and how it is tested."""

    task: str
    row: str
    seed: int
    train: TrainConfig
    variant_overrides: dict[str, Any]
    test_lengths: tuple[int, ...]
    test_count: int
    test_set: str = "dev"

    @property
    def path(self) -> Path:
        """The run directory, relative to the bench's output directory."""
        return Path("runs", self.task, self.row, f"seed-{self.seed}")

    @property
    def label(self) -> str:
        return f"{self.task}/{self.row}/seed-{self.seed}"

    def settings(self) -> dict[str, Any]:
        """Everything the result depends on, as JSON values (stored in result.json)."""
        return _jsonable(
            {
                "train": dataclasses.asdict(self.train),
                "test_lengths": list(self.test_lengths),
                "test_count": self.test_count,
                "test_set": self.test_set,
                "test_seed": seed_of_test_set(self.test_set),
            }
        )


def plan_runs(config: BenchConfig) -> list[RunSpec]:
    """Every run of `config`, seed by seed (a complete table per seed comes first).

    Checks each row's model settings on each task, so a typo fails here, before any training.
    """
    tasks = {}
    for label, name, options in config.task_entries():
        try:
            tasks[label] = (name, options, get_task(name, **options))
        except (TypeError, ValueError) as error:
            raise ValueError(f"task {label!r}: {error}") from error
    budget: dict[str, Any] = {"minutes": config.minutes}
    if config.steps is not None:
        budget["steps"] = config.steps
    elif config.minutes is not None:
        budget["steps"] = NO_STEP_LIMIT
    if config.batch_size is not None:
        budget["batch_size"] = config.batch_size
    task_budget = {task: {"steps": steps} for task, steps in config.task_steps.items()}
    model_budget = {model: {"steps": steps} for model, steps in config.model_steps.items()}
    # task_options named in train_options replace a recipe's ({} pins the plain task)
    options_given = "task_options" in config.train_options
    specs = []
    for seed in config.seeds:
        for label, (task_name, task_options, task) in tasks.items():
            for row, model, variant_overrides in config.rows():
                recipe = default_train_config(task_name, model)
                recipe_task_options = {} if options_given else recipe.task_options
                overrides = {
                    **recipe.model_overrides,
                    **config.model_overrides.get(model, {}),
                    **variant_overrides,
                }
                try:
                    model_config(model, task, overrides)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"row {row!r} on task {label!r}: {error}") from error
                train_config = dataclasses.replace(
                    recipe,
                    **{
                        **config.train_options,
                        "task_options": {**recipe_task_options, **task_options},
                    },
                    **{
                        **budget,
                        **task_budget.get(task_name, {}),
                        **model_budget.get(model, {}),
                    },
                    seed=seed,
                    model_overrides=overrides,
                )
                lengths = config.test_lengths or list(task.default_test_lengths)
                specs.append(
                    RunSpec(
                        label,
                        row,
                        seed,
                        train_config,
                        variant_overrides,
                        tuple(lengths),
                        config.test_count,
                        config.test_set,
                    )
                )
    return specs


def execute_run(
    spec: RunSpec, out_dir: Path, progress: bool = False, command: str | None = None
) -> dict[str, Any]:
    """Trains (or resumes) one run, tests its best checkpoint and writes its result.json
    (`command`: the command line that ran it, recorded there)."""
    run_dir = out_dir / spec.path
    # The source's commit as the run starts: a checkout that changes while the run trains does
    # not change the code this process has imported, so the commit of the end would misname it.
    commit = source_commit()
    resume = (run_dir / RUN_CONFIG).is_file()
    if resume:
        _check_same_run(run_dir, spec.train)
    trained = train(spec.train, run_dir, resume=resume, progress=progress)
    task = get_task(spec.train.task, **spec.train.task_options)
    # The planned evaluation-only settings apply even to a run trained before they changed
    # (its best checkpoint stays the one its own validation chose).
    planned = model_config(spec.train.model, task, spec.train.model_overrides)
    model = load_checkpoint_model(run_dir, "best", spec.train.device, evaluation_settings(planned))
    started = time.monotonic()
    accuracies = evaluate_lengths(
        model,
        task,
        list(spec.test_lengths),
        spec.test_count,
        spec.test_set,
        device=spec.train.device,
    )
    best = trained.best_valid or {}
    result = {
        "task": spec.task,
        "row": spec.row,
        "model": spec.train.model,
        "seed": spec.seed,
        "task_options": spec.train.task_options,
        "variant_overrides": spec.variant_overrides,
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(trained.elapsed_seconds, 2),
        "test_seconds": round(time.monotonic() - started, 2),
        "steps": trained.step,
        "stopped_by": "steps" if trained.step >= spec.train.steps else "time limit",
        "best_step": trained.best_step,
        **best,
        "train_lengths": list(spec.train.train_lengths or task.default_train_lengths),
        "test_set": {"name": spec.test_set, "seed": seed_of_test_set(spec.test_set)},
        "test": [{"length": length, **acc.as_dict()} for length, acc in accuracies.items()],
        "run_dir": spec.path.as_posix(),
        "command": command,
        "commit": commit,
        "machine": machine_info(spec.train.device),
        "model_config": _jsonable(dataclasses.asdict(model.config)),
        "settings": spec.settings(),
    }
    atomic_write(run_dir / RESULT_NAME, lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    return result


def source_commit() -> dict[str, Any] | None:
    """The git commit of panm's source and whether that source had uncommitted changes
    ({"hash", "modified"}), or None outside a git checkout."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "hash": git("rev-parse", "HEAD"),
            "modified": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".")),
        }
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine a run ran on: CPU model, cores, torch threads, torch and Python versions,
    the GPU's name on CUDA, and the 1-minute load average as the run ends (other work on the
    machine)."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def finished_result(spec: RunSpec, out_dir: Path) -> dict[str, Any] | None:
    """The run's stored result if it was made with the run's current settings, else None.

    The stored training config is read as a `TrainConfig` before comparing
    (`_train_config_json`), so a run finished by older code is not stale for that alone.
    """
    path = out_dir / spec.path / RESULT_NAME
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    settings = result.get("settings")
    if not isinstance(settings, dict):
        return None
    try:
        settings = {**settings, "train": _train_config_json(settings["train"])}
    except (KeyError, TypeError, ValueError):
        return None
    return result if settings == spec.settings() else None


def _train_config_json(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored training config (run.json, or a result's settings) as today's `TrainConfig`
    writes it: fields whose stored form changed since (`compile`: false is now null) or added
    since (their defaults) compare equal to a new run's."""
    return _jsonable(dataclasses.asdict(config_from_dict(TrainConfig, stored)))


def run_bench(
    config: BenchConfig,
    out_dir: str | os.PathLike,
    jobs: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> list[dict[str, Any]]:
    """Runs every run of `config` not yet done, `jobs` at a time; one outcome per run
    (`command`: the command line, recorded in each new result).

    An outcome is the run's result dict, or for a failed run {"task", "row", "model", "seed",
    "run_dir", "error"} (its traceback is in the run's error.txt). jobs=None: one per CPU core;
    jobs=1 runs in this process (with its torch thread settings) instead of spawned processes.
    """
    jobs = jobs if jobs is not None else os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out_dir = Path(out_dir)
    specs = plan_runs(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out_dir / CONFIG_NAME,
        lambda p: p.write_text(json.dumps(config.to_dict(), indent=2) + "\n"),
    )
    outcomes: dict[str, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        result = finished_result(spec, out_dir)
        if result is None:
            todo.append(spec)
        else:
            outcomes[spec.label] = result
    reporter = _Progress(len(specs), len(outcomes), jobs, config.minutes, progress)
    for spec in todo:  # a stale result or error must not outlive the new attempt
        (out_dir / spec.path / RESULT_NAME).unlink(missing_ok=True)
        (out_dir / spec.path / ERROR_NAME).unlink(missing_ok=True)
    if jobs == 1:
        for spec in todo:
            reporter.started(spec, out_dir)
            try:
                outcome = execute_run(spec, out_dir, progress=progress, command=command)
            except Exception:
                _record_error(out_dir / spec.path, traceback.format_exc())
                outcome = _collect(spec, out_dir, exitcode=1)
            outcomes[spec.label] = outcome
            reporter.finished(spec, outcome)
    else:
        for spec, outcome in _run_in_processes(todo, out_dir, jobs, reporter, command):
            outcomes[spec.label] = outcome
    return [outcomes[spec.label] for spec in specs]


def _run_in_processes(
    specs: list[RunSpec], out_dir: Path, jobs: int, reporter: _Progress, command: str | None
) -> list[tuple[RunSpec, dict[str, Any]]]:
    """Runs `specs`, at most `jobs` spawned processes at a time; their outcomes as they end.

    On KeyboardInterrupt (which the processes receive too: they save a checkpoint and stop) the
    running processes are given a minute to end, then terminated.
    """
    context = multiprocessing.get_context("spawn")
    queue = list(specs)
    running: dict[Any, tuple[Any, RunSpec]] = {}
    outcomes = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                reporter.started(spec, out_dir)
                process = context.Process(
                    target=_process_main,
                    args=(spec, out_dir, command),
                    name=f"panm-bench {spec.label}",
                )
                process.start()
                running[process.sentinel] = (process, spec)
            for sentinel in wait(list(running)):
                process, spec = running.pop(sentinel)
                process.join()
                outcome = _collect(spec, out_dir, process.exitcode)
                outcomes.append((spec, outcome))
                reporter.finished(spec, outcome)
    finally:
        for process, _ in running.values():
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
                process.join()
    return outcomes


def _process_main(spec: RunSpec, out_dir: Path, command: str | None) -> None:
    """Entry point of a run's process: one torch thread; errors go to the run's error.txt."""
    torch.set_num_threads(1)
    try:
        execute_run(spec, out_dir, command=command)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        _record_error(out_dir / spec.path, traceback.format_exc())
        sys.exit(1)


def _collect(spec: RunSpec, out_dir: Path, exitcode: int | None) -> dict[str, Any]:
    """The outcome of an attempted run: its result, or what went wrong."""
    result = finished_result(spec, out_dir)
    if result is not None:
        return result
    run_dir = out_dir / spec.path
    error_file = run_dir / ERROR_NAME
    if not error_file.is_file():
        _record_error(run_dir, f"the run's process ended with exit code {exitcode} and no result\n")
    lines = [line for line in error_file.read_text().splitlines() if line.strip()]
    return {
        "task": spec.task,
        "row": spec.row,
        "model": spec.train.model,
        "seed": spec.seed,
        "run_dir": spec.path.as_posix(),
        "error": lines[-1] if lines else "unknown error",
    }


def _record_error(run_dir: Path, text: str) -> None:
    atomic_write(run_dir / ERROR_NAME, lambda p: p.write_text(text))


def _check_same_run(run_dir: Path, config: TrainConfig) -> None:
    """Raises ValueError if `run_dir` holds a run of other settings (budgets and
    evaluation-only model settings may differ). Model settings are compared as the model
    configs they give, so naming a setting at its default value changes nothing."""
    stored = _train_config_json(json.loads((run_dir / RUN_CONFIG).read_text()))
    planned = _jsonable(dataclasses.asdict(config))
    differing = sorted(
        key
        for key in set(stored) | set(planned)
        if key not in ("steps", "minutes", "model_overrides")
        and stored.get(key) != planned.get(key)
    )
    if not differing and not _same_model(stored, planned):
        differing = ["model_overrides"]
    if differing:
        raise ValueError(
            f"{run_dir} holds a run with other settings ({', '.join(differing)}); "
            "delete it to start that run over"
        )


def _resolved_model(train_config: dict[str, Any]) -> Any:
    """The model config a stored or planned run's settings give."""
    task = get_task(train_config["task"], **train_config.get("task_options", {}))
    return model_config(train_config["model"], task, train_config.get("model_overrides"))


def _same_model(stored: dict[str, Any], planned: dict[str, Any]) -> bool:
    """Whether both runs build the same model, evaluation-only settings aside (False where the
    stored settings are not valid for this version of panm)."""
    planned_model = _resolved_model(planned)
    try:
        stored_model = _resolved_model(stored)
    except (KeyError, TypeError, ValueError):
        return False
    return with_overrides(stored_model, evaluation_settings(planned_model)) == planned_model


class _Progress:
    """One line per started and finished run on standard error, with an ETA."""

    def __init__(
        self, total: int, done: int, jobs: int, minutes: float | None, enabled: bool
    ) -> None:
        self.total, self.done, self.failed, self.jobs = total, done, 0, jobs
        self.enabled = enabled
        self.guess = minutes * 60 if minutes else None  # seconds per run before one ends
        self.durations: list[float] = []
        self.starts: dict[str, float] = {}
        self._print(
            f"{total} runs, {done} already done, {total - done} to do, up to {jobs} at a time"
        )

    def started(self, spec: RunSpec, out_dir: Path) -> None:
        self.starts[spec.label] = time.monotonic()
        how = "resumed" if (out_dir / spec.path / RUN_CONFIG).is_file() else "started"
        self._print(f"[{self.done}/{self.total}] {how} {spec.label}")

    def finished(self, spec: RunSpec, outcome: dict[str, Any]) -> None:
        seconds = time.monotonic() - self.starts.pop(spec.label)
        self.durations.append(seconds)
        self.done += 1
        if "error" in outcome:
            self.failed += 1
            status = f"FAILED: {outcome['error']} (see {outcome['run_dir']}/{ERROR_NAME})"
        else:
            tests = ", ".join(
                f"{t['length']}: {t['sequence_accuracy']:.2f}" for t in outcome["test"]
            )
            status = f"valid {outcome['valid_sequence_accuracy']:.3f}; test {tests}"
        failed = f", {self.failed} failed" if self.failed else ""
        took = format_duration(seconds)
        self._print(
            f"[{self.done}/{self.total}{failed}] {spec.label} in {took}: {status}; {self._eta()}"
        )

    def _eta(self) -> str:
        remaining = self.total - self.done
        if not remaining:
            return "all done"
        per_run = sum(self.durations) / len(self.durations) if self.durations else self.guess
        if per_run is None:
            return "ETA unknown"
        return f"ETA ~{format_duration(per_run * remaining / min(self.jobs, remaining))}"

    def _print(self, message: str) -> None:
        if self.enabled:
            print(f"panm bench: {message}", file=sys.stderr, flush=True)


def bench_command(
    config_path: str | None,
    quick: bool,
    out: str,
    jobs: int | None,
    device: str | None = None,
    test_set: str | None = None,
) -> str:
    """The `panm bench` command line equivalent to these arguments."""
    words = ["panm", "bench"]
    if config_path:
        words.append(config_path)
    if quick:
        words.append("--quick")
    words += ["--out", out]
    if jobs is not None:
        words += ["--jobs", str(jobs)]
    if device is not None:
        words += ["--device", device]
    if test_set is not None:
        words += ["--test-set", test_set]
    return shlex.join(words)


def bench_main(
    config_path: str | None,
    quick: bool,
    out: str,
    jobs: int | None,
    progress: bool,
    device: str | None = None,
    test_set: str | None = None,
) -> int:
    """`panm bench [CONFIG] [--quick] [--out DIR] [--jobs N] [--device D] [--test-set S]`:
    runs, reports, prints the tables. `device` overrides the config's train_options["device"],
    `test_set` its test set.

    Returns 0, or 1 if some runs failed (the report then covers the others and lists them).
    """
    if quick == bool(config_path):
        raise ValueError("give either a bench config file or --quick")
    config = QUICK if quick else load_config(str(config_path))
    if device is not None:
        config = dataclasses.replace(
            config, train_options={**config.train_options, "device": device}
        )
    if test_set is not None:
        config = dataclasses.replace(config, test_set=test_set)
    torch.set_num_threads(1)  # for jobs=1 (in-process runs); spawned runs set their own
    command = bench_command(config_path, quick, out, jobs, device, test_set)
    outcomes = run_bench(config, out, jobs, progress, command)
    print(write_report(out))
    failed = [o for o in outcomes if "error" in o]
    for outcome in failed:
        print(f"panm: run {outcome['run_dir']} failed: {outcome['error']}", file=sys.stderr)
    if failed:
        print(f"panm: {len(failed)} of {len(outcomes)} runs failed", file=sys.stderr)
        return 1
    return 0


def _jsonable(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))
