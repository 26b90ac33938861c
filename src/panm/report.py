"""The benchmark report: tables and plots from every run's result.json in a bench directory.

`write_report(out_dir, command)` reads OUT/runs/*/*/*/result.json (see panm.bench) and writes

    OUT/results.json     the raw results, one object per run
    OUT/results.csv      one line per run, with sequence and token accuracy per test length
    OUT/results.md       per task, a table of rows (models and variants) by test length
    OUT/plot_<task>.png  sequence accuracy against test length, one line per row

A row's statistics are over its seeds: the mean, and the sample standard deviation (n - 1; 0 for
a single seed). Plots need matplotlib; without it they are skipped with a warning.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panm.models.registry import MODEL_NAMES
from panm.pretrained import atomic_write
from panm.tasks import TASK_NAMES

RESULT_GLOB = "runs/*/*/*/result.json"
ERROR_GLOB = "runs/*/*/*/error.txt"
RUN_COLUMNS = (
    "task",
    "row",
    "model",
    "seed",
    "params",
    "train_seconds",
    "steps",
    "best_step",
    "valid_sequence_accuracy",
    "valid_token_accuracy",
)
"""The per-run columns of results.csv, before two per test length."""

Length = int | str
"""A test length, or "all" for a data-set task's whole test set."""


@dataclass
class Stat:
    """Mean and sample standard deviation of a value over seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values))


@dataclass
class RowSummary:
    """One row (model or variant) of one task, over its seeds."""

    task: str
    row: str
    model: str
    seeds: list[int]
    params: float
    train_seconds: float
    valid: Stat
    train_lengths: tuple[int, int]
    variant_overrides: dict[str, Any]
    sequence: dict[Length, Stat] = field(default_factory=dict)
    token: dict[Length, Stat] = field(default_factory=dict)


def load_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every run's result in `out_dir`, ordered by task, row and seed."""
    results = [json.loads(p.read_text()) for p in Path(out_dir).glob(RESULT_GLOB)]
    return sorted(results, key=lambda r: (*_row_order(r["task"], r["row"], r["model"]), r["seed"]))


def load_failures(out_dir: str | Path) -> list[dict[str, str]]:
    """Runs whose latest attempt failed: {"run_dir", "error" (the traceback's last line)}."""
    out_dir = Path(out_dir)
    failures = []
    for path in sorted(out_dir.glob(ERROR_GLOB)):
        if (path.parent / "result.json").exists():
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        failures.append(
            {
                "run_dir": path.parent.relative_to(out_dir).as_posix(),
                "error": lines[-1] if lines else "unknown error",
            }
        )
    return failures


def summarize(results: list[dict[str, Any]]) -> dict[str, list[RowSummary]]:
    """Per task (in benchmark order), its rows' statistics over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in sorted(results, key=lambda r: _row_order(r["task"], r["row"], r["model"])):
        groups.setdefault((result["task"], result["row"]), []).append(result)
    tables: dict[str, list[RowSummary]] = {}
    for (task, row), runs in groups.items():
        first = runs[0]
        summary = RowSummary(
            task=task,
            row=row,
            model=first["model"],
            seeds=sorted(r["seed"] for r in runs),
            params=statistics.fmean(r["params"] for r in runs),
            train_seconds=statistics.fmean(r["train_seconds"] for r in runs),
            valid=Stat.of([r["valid_sequence_accuracy"] for r in runs]),
            train_lengths=tuple(first["train_lengths"]),
            variant_overrides=first.get("variant_overrides", {}),
        )
        for length in _lengths(runs):
            tests = [t for r in runs for t in r["test"] if t["length"] == length]
            summary.sequence[length] = Stat.of([t["sequence_accuracy"] for t in tests])
            summary.token[length] = Stat.of([t["token_accuracy"] for t in tests])
        tables.setdefault(task, []).append(summary)
    return tables


def write_report(out_dir: str | Path) -> str:
    """Writes results.json, results.csv, results.md and the plots; returns the Markdown."""
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    tables = summarize(results)
    commands = sorted({r["command"] for r in results if r.get("command")})
    markdown = format_markdown(tables, commands, load_failures(out_dir), split_table(results))
    atomic_write(
        out_dir / "results.json", lambda p: p.write_text(json.dumps(results, indent=2) + "\n")
    )
    atomic_write(out_dir / "results.csv", lambda p: _write_csv(p, results))
    atomic_write(out_dir / "results.md", lambda p: p.write_text(markdown))
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "panm: matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr
        )
        return markdown
    for task, rows in tables.items():
        atomic_write(out_dir / f"plot_{task}.png", lambda p, t=task, r=rows: plot_task(p, t, r))
    return markdown


def split_table(results: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of a table of whole-test-set accuracy by split (rows by splits), for the
    runs of data-set tasks with a split (SCAN); [] when there are none.

    Cell: exact match % mean ± std over seeds, then (oracle-length exact match %, mean).
    """
    cells: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for result in sorted(results, key=lambda r: _row_order(r["task"], r["row"], r["model"])):
        split = result.get("task_options", {}).get("split")
        whole = [t for t in result["test"] if t["length"] == "all"]
        if split is None or not whole:
            continue
        cells.setdefault(result["row"], {}).setdefault(split, []).append(whole[0])
    if not cells:
        return []
    splits = sorted({s for row in cells.values() for s in row}, key=_split_order)
    lines = [
        "## Whole test set, by split",
        "",
        "Exact match % (mean ± std over seeds), then (exact match % with the oracle output",
        "length, mean); *n*: seeds.",
        "",
        "| row | " + " | ".join(splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for row, by_split in cells.items():
        texts = []
        for split in splits:
            tests = by_split.get(split, [])
            if not tests:
                texts.append("–")
                continue
            text = _percent(Stat.of([t["sequence_accuracy"] for t in tests]))
            oracle = [t.get("oracle_sequence_accuracy") for t in tests]
            oracle = [value for value in oracle if value is not None]
            if oracle:
                text += f" ({_percent(Stat.of(oracle), std=False)})"
            texts.append(f"{text}, n={len(tests)}")
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    return lines


def _split_order(split: str) -> tuple:
    number = split.rsplit("-", 1)[-1]
    return (not number.isdigit(), int(number) if number.isdigit() else 0, split)


def format_markdown(
    tables: dict[str, list[RowSummary]],
    commands: list[str],
    failures: list[dict[str, str]],
    by_split: list[str] | None = None,
) -> str:
    """The report's Markdown: the command, the by-split table (if any), one table per task,
    then failed runs."""
    lines = [
        "# Benchmark results",
        "",
        "Command: " + ", ".join(f"`{c}`" for c in commands) if commands else "Command: unknown",
        "",
        "Each test-length cell: sequence accuracy % (exact match), mean ± standard deviation",
        "over seeds, then (token accuracy %, mean). *valid*: sequence accuracy % on held-out",
        "examples of the training lengths, which alone chose each run's checkpoint. *train*:",
        "mean training time.",
    ]
    if by_split:
        lines += ["", *by_split]
    for task, rows in tables.items():
        lengths = _lengths_of_rows(rows)
        seeds = sorted({s for row in rows for s in row.seeds})
        low, high = rows[0].train_lengths
        lines += [
            "",
            f"## {task}",
            "",
            f"Trained on lengths {low}–{high}; seeds {', '.join(map(str, seeds))}.",
            "",
            "| row | params | seeds | train | valid | " + " | ".join(map(str, lengths)) + " |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(lengths),
        ]
        for row in rows:
            cells = [
                f"{_percent(row.sequence[n])} ({_percent(row.token[n], std=False)})"
                if n in row.sequence
                else "–"
                for n in lengths
            ]
            lines.append(
                f"| {row.row} | {row.params:,.0f} | {len(row.seeds)} | "
                f"{format_duration(row.train_seconds)} | {_percent(row.valid)} | "
                + " | ".join(cells)
                + " |"
            )
        variants = [row for row in rows if row.row != row.model]
        if variants:
            lines.append("")
            for row in variants:
                settings = ", ".join(
                    f"{k}={json.dumps(v)}" for k, v in row.variant_overrides.items()
                )
                lines.append(f"- {row.row}: {row.model} with {settings or 'no changes'}")
    if failures:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {f['run_dir']}: {f['error']}" for f in failures]
    return "\n".join(lines) + "\n"


def plot_task(path: Path, task: str, rows: list[RowSummary]) -> None:
    """Sequence accuracy against test length (log2 axis), one line per row, as a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    low, high = rows[0].train_lengths
    axes.axvspan(low, high, color="0.85", label="training lengths")
    for row in rows:
        lengths = [n for n in row.sequence if isinstance(n, int)]
        axes.errorbar(
            lengths,
            [row.sequence[n].mean for n in lengths],
            yerr=[row.sequence[n].std for n in lengths],
            marker="o",
            capsize=3,
            label=row.row,
        )
    axes.set_xscale("log", base=2)
    ticks = sorted({n for row in rows for n in row.sequence if isinstance(n, int)})
    axes.set_xticks(ticks, labels=[str(n) for n in ticks])
    axes.minorticks_off()
    axes.set_xlabel("test length")
    axes.set_ylabel("sequence accuracy")
    axes.set_ylim(-0.02, 1.02)
    seeds = max(len(row.seeds) for row in rows)
    spread = "mean ± std over seeds" if seeds > 1 else "one seed"
    axes.set_title(f"{task}: sequence accuracy by length ({spread})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, format="png", dpi=120)


def _write_csv(path: Path, results: list[dict[str, Any]]) -> None:
    lengths = _lengths(results)
    header = [*RUN_COLUMNS]
    for n in lengths:
        header += [f"sequence_accuracy@{n}", f"token_accuracy@{n}"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for result in results:
            tests = {t["length"]: t for t in result["test"]}
            line = [result[c] for c in RUN_COLUMNS]
            for n in lengths:
                test = tests.get(n, {})
                line += [test.get("sequence_accuracy", ""), test.get("token_accuracy", "")]
            writer.writerow(line)


def _row_order(task: str, row: str, model: str) -> tuple:
    """Tasks and models in the order of the registry; a model's variants after the model."""
    task_rank = TASK_NAMES.index(task) if task in TASK_NAMES else len(TASK_NAMES)
    model_rank = MODEL_NAMES.index(model) if model in MODEL_NAMES else len(MODEL_NAMES)
    return (task_rank, task, model_rank, model, row != model, row)


def _length_order(length: Length) -> tuple[bool, Length]:
    return (isinstance(length, str), length)


def _lengths(results: list[dict[str, Any]]) -> list[Length]:
    return sorted({t["length"] for r in results for t in r["test"]}, key=_length_order)


def _lengths_of_rows(rows: list[RowSummary]) -> list[Length]:
    return sorted({n for row in rows for n in row.sequence}, key=_length_order)


def _percent(stat: Stat, std: bool = True) -> str:
    text = f"{100 * stat.mean:.1f}"
    if std and stat.n > 1:
        text += f" ± {100 * stat.std:.1f}"
    return text


def format_duration(seconds: float) -> str:
    """ "42 s", "2.5 min" or "1.2 h"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
