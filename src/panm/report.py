"""The benchmark report: tables and plots from every run's result.json in a bench directory,
and the published tables generated from committed raw results.

`write_report(out_dir)` reads OUT/runs/*/*/*/result.json (see panm.bench) and writes

    OUT/results.json     the raw results, one object per run
    OUT/results.csv      one line per run, with sequence and token accuracy per test length
    OUT/results.md       per task, a table of rows (models and variants) by test length, then
                         for Chomsky-hierarchy tasks accuracy averaged over the test lengths
    OUT/plot_<task>.png  sequence accuracy against test length, one line per row

A row's statistics are over its seeds: the mean, and the sample standard deviation (n - 1; 0 for
a single seed). Plots need matplotlib; without it they are skipped with a warning.

Published results: `publish(bench_dir, docs_dir)` copies a bench's result.json files (no
checkpoints) to docs_dir/runs/ and writes the report there. A Markdown file (the README, any
doc) shows a table generated from such a folder between two markers, the path relative to the
Markdown file and the tasks to show::

    <!-- panm-table docs/quick reverse,copy -->
    ...generated: one table per task, then the seeds, test set, budget and machine...
    <!-- /panm-table -->

In place of the tasks, `splits` shows one table of the whole test set by split (SCAN's
cut-offs), and `averages` one table of the Chomsky-hierarchy tasks' accuracy averaged over the
test lengths, a line per task and row. Several folders joined by "+"
(`docs/headline_final+docs/baselines_budget_final`) make one table of their rows, for PANM and
the baselines from separate benches; a run (task, row, seed) may come from only one of them.

`update_tables` regenerates those blocks; `check_published` lists every block and every
published folder's report that differs from what its raw results give, or that holds results
not scored on the final test set (tests/test_published.py runs it over the repository).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shutil
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panm.models.registry import MODEL_NAMES
from panm.pretrained import atomic_write
from panm.tasks import TASK_NAMES
from panm.tasks.chomsky import CHOMSKY_TASKS
from panm.training import NO_STEP_LIMIT

RESULT_NAME = "result.json"
RESULT_GLOB = f"runs/*/*/*/{RESULT_NAME}"
ERROR_GLOB = "runs/*/*/*/error.txt"
RUN_COLUMNS = (
    "task",
    "row",
    "model",
    "seed",
    "params",
    "train_seconds",
    "steps",
    "stopped_by",
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
    steps: float
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
            steps=statistics.fmean(r["steps"] for r in runs),
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


def report_texts(out_dir: str | Path) -> dict[str, str]:
    """File name -> text of the report's text files (results.json, .csv, .md) for the results
    in `out_dir`: a function of the result files alone."""
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    commands = sorted({r["command"] for r in results if r.get("command")})
    markdown = format_markdown(results, commands, load_failures(out_dir))
    averages = length_average_table(results)
    if averages:
        markdown += "\n" + "\n".join(averages) + "\n"
    return {
        "results.json": json.dumps(results, indent=2) + "\n",
        "results.csv": _csv_text(results),
        "results.md": markdown,
    }


def write_report(out_dir: str | Path) -> str:
    """Writes results.json, results.csv, results.md and the plots; returns the Markdown."""
    out_dir = Path(out_dir)
    texts = report_texts(out_dir)
    for name, text in texts.items():
        atomic_write(out_dir / name, lambda p, t=text: p.write_text(t))
    markdown = texts["results.md"]
    tables = summarize(load_results(out_dir))
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "panm: matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr
        )
        return markdown
    for task, rows in tables.items():
        atomic_write(out_dir / f"plot_{task}.png", lambda p, t=task, r=rows: plot_task(p, t, r))
    return markdown


def split_table(results: list[dict[str, Any]], heading: bool = True) -> list[str]:
    """Markdown lines of a table of whole-test-set accuracy by split (rows by splits), for the
    runs of data-set tasks with a split (SCAN), under a heading that explains the cells unless
    `heading` is False; [] when there are none.

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
    lines = (
        [
            "## Whole test set, by split",
            "",
            "Exact match % (mean ± std over seeds), then (exact match % with the oracle output",
            "length, mean); *n*: seeds.",
            "",
        ]
        if heading
        else []
    )
    lines += ["| row | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
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


def length_average_table(results: list[dict[str, Any]], heading: bool = True) -> list[str]:
    """Markdown lines of a table of accuracy averaged over each run's test lengths, the score of
    the Chomsky-hierarchy protocol (Deletang et al. 2023), for the runs of its tasks
    (`panm.tasks.chomsky`), one line per task and row; [] when there are none. heading: a
    section title and a sentence on the cells before the table.

    Per run: the mean over its test lengths of per-token accuracy and of exact match. Cells:
    mean ± std over seeds, then the best seed's value (the paper reports the best of its seeds).
    """
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for result in sorted(results, key=lambda r: _row_order(r["task"], r["row"], r["model"])):
        tests = [t for t in result["test"] if isinstance(t["length"], int)]
        if tests and result["task"] in CHOMSKY_TASKS:
            token = statistics.fmean(t["token_accuracy"] for t in tests)
            exact = statistics.fmean(t["sequence_accuracy"] for t in tests)
            groups.setdefault((result["task"], result["row"]), []).append((token, exact))
    if not groups:
        return []
    lines = (
        [
            "## Averaged over the test lengths",
            "",
            "Per run, the mean over its test lengths; cells: mean ± std over seeds, then (best",
            "seed). *n*: seeds.",
            "",
        ]
        if heading
        else []
    )
    lines += [
        "| task | row | n | per-token accuracy % | exact match % |",
        "|---|---|---:|---:|---:|",
    ]
    for (task, row), runs in groups.items():
        cells = []
        for values in ([token for token, _ in runs], [exact for _, exact in runs]):
            cells.append(f"{_percent(Stat.of(values))} ({100 * max(values):.1f})")
        lines.append(f"| {task} | {row} | {len(runs)} | {cells[0]} | {cells[1]} |")
    return lines


def _split_order(split: str) -> tuple:
    number = split.rsplit("-", 1)[-1]
    return (not number.isdigit(), int(number) if number.isdigit() else 0, split)


def _length_cells(row: Any, lengths: list[int]) -> list[str]:
    """A row's cells per test length: sequence accuracy (token accuracy), "–" where untested."""
    return [
        f"{_percent(row.sequence[n])} ({_percent(row.token[n], std=False)})"
        if n in row.sequence
        else "–"
        for n in lengths
    ]


def format_markdown(
    results: list[dict[str, Any]], commands: list[str], failures: list[dict[str, str]]
) -> str:
    """The report's Markdown: the commands, the by-split table (if any), one table per task
    with its provenance (:func:`provenance`), then failed runs."""
    tables = summarize(results)
    by_split = split_table(results)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_task.setdefault(result["task"], []).append(result)
    lines = [
        "# Benchmark results",
        "",
        "Command: " + ", ".join(f"`{c}`" for c in commands) if commands else "Command: unknown",
        "",
        "Each test-length cell: sequence accuracy % (exact match), mean ± standard deviation",
        "over seeds, then (token accuracy %, mean). *valid*: sequence accuracy % on held-out",
        "examples of the training lengths, which alone chose each run's checkpoint. *steps*:",
        "training steps made (mean over seeds); *train*: mean training time.",
    ]
    if by_split:
        lines += ["", *by_split]
    for task, rows in tables.items():
        lengths = _lengths_of_rows(rows)
        lines += [
            "",
            f"## {task}",
            "",
            provenance(by_task[task]),
            "",
            "| row | params | seeds | steps | train | valid | "
            + " | ".join(map(str, lengths))
            + " |",
            "|---|---:|---:|---:|---:|---:|" + "---:|" * len(lengths),
        ]
        for row in rows:
            cells = _length_cells(row, lengths)
            lines.append(
                f"| {row.row} | {row.params:,.0f} | {len(row.seeds)} | {row.steps:,.0f} | "
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


def provenance(results: list[dict[str, Any]]) -> str:
    """What a table's figures rest on, as a paragraph: seeds, test set and sequences per
    length, training budget and lengths (and whether every run made its budget), how the
    checkpoint was chosen, the machine and the commit. Fields an older result lacks are
    "not recorded"."""
    parts = [_seeds_text(results)]
    test_sets = sorted({_test_set_text(r.get("test_set")) for r in results})
    counts = sorted({t["count"] for r in results for t in r["test"] if t["length"] != "all"})
    whole = any(t["length"] == "all" for r in results for t in r["test"])
    if whole:
        size = "every example of the split's test part"
    else:
        size = f"{_range_text(counts)} sequences per length"
    parts.append(f"{' and '.join(test_sets)}, {size}")
    low_high = sorted({tuple(r["train_lengths"]) for r in results})
    lengths = ", ".join(f"{low}–{high}" for low, high in low_high)
    stopped = [r for r in results if r.get("stopped_by") == "time limit"]
    if any("stopped_by" not in r for r in results):
        made = "whether every run made its budget not recorded"
    elif stopped:
        made = "stopped by the time limit before their step budget: " + ", ".join(
            f"{r['task']}/{r['row']} seed {r['seed']} ({r['steps']:,} steps)" for r in stopped
        )
    else:
        made = "every run made its full budget"
    parts.append(f"{_budget_text(results)} on lengths {lengths}, {made}")
    parts.append(f"checkpoint chosen on validation at lengths {lengths} only")
    parts.append(f"machine: {_machine_text(results)}")
    commits = sorted({_commit_text(r.get("commit")) for r in results})
    parts.append(f"commit {', '.join(commits)}.")
    return "; ".join(parts)


def _seeds_text(results: list[dict[str, Any]]) -> str:
    """ "Seeds 0, 1, 2": the seeds of most rows, and the rows with others ("Seeds 0, 1, 2
    (lstm, pointer: seed 0)"); rows named with their task ("copy lstm") when there are
    several tasks."""
    several_tasks = len({result["task"] for result in results}) > 1
    row_seeds: dict[str, set[int]] = {}
    for result in results:
        row = f"{result['task']} {result['row']}" if several_tasks else result["row"]
        row_seeds.setdefault(row, set()).add(result["seed"])

    def text(seeds: tuple[int, ...]) -> str:
        return f"{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"

    rows_by_seeds: dict[tuple[int, ...], list[str]] = {}
    for row, seeds in row_seeds.items():
        rows_by_seeds.setdefault(tuple(sorted(seeds)), []).append(row)
    common = max(rows_by_seeds, key=lambda seeds: len(rows_by_seeds[seeds]))
    others = [
        f"{', '.join(rows)}: seed{text(seeds)}"
        for seeds, rows in rows_by_seeds.items()
        if seeds != common
    ]
    return f"Seed{text(common)}" + (f" ({'; '.join(others)})" if others else "")


def _test_set_text(test_set: dict[str, Any] | None) -> str:
    if not test_set:
        return "test set not recorded"
    return f"{test_set['name']} test set (seed {test_set['seed']})"


def _range_text(values: list[int]) -> str:
    if not values:
        return "no"
    if values[0] == values[-1]:
        return f"{values[0]:,}"
    return f"{values[0]:,}–{values[-1]:,}"


def _budget_text(results: list[dict[str, Any]]) -> str:
    """ "trained 5,000 steps or 30 minutes (transformer: 2,000 steps or 30 minutes)": the
    budget of most rows, then the others: a row's where it has one on every task, else a task's
    (that of most of its rows), and a "task row"'s where it differs from its task's."""
    trains = [result.get("settings", {}).get("train", {}) for result in results]
    # batches are named only where they differ, as steps of unequal batches are unequal budgets
    with_batch = len({train.get("batch_size") for train in trains}) > 1
    texts = []
    for train in trains:
        steps, minutes, batch = train.get("steps"), train.get("minutes"), train.get("batch_size")
        if steps is None:
            texts.append("a budget not recorded")
        elif steps >= NO_STEP_LIMIT:
            texts.append(f"{minutes:g} minutes")
        else:
            of_batch = f" of {batch:,}" if with_batch and batch is not None else ""
            texts.append(
                f"{steps:,} steps{of_batch}" + (f" or {minutes:g} minutes" if minutes else "")
            )
    pair_text = {
        (result["task"], result["row"]): text for result, text in zip(results, texts, strict=True)
    }
    common = Counter(pair_text.values()).most_common(1)[0][0]  # ties: the first row's
    exceptions: dict[str, list[str]] = {}  # budget -> the rows, tasks or "task row"s with it
    row_texts: dict[str, set[str]] = {}
    for (_, row), text in pair_text.items():
        row_texts.setdefault(row, set()).add(text)
    for row, found in row_texts.items():  # a row with one budget on every task
        if len(found) == 1 and found != {common}:
            exceptions.setdefault(next(iter(found)), []).append(row)
    by_task: dict[str, dict[str, str]] = {}
    for (task, row), text in pair_text.items():
        if len(row_texts[row]) > 1:
            by_task.setdefault(task, {})[row] = text
    for task, rows in by_task.items():  # else a task's own budget, then its rows' exceptions
        usual = Counter(rows.values()).most_common(1)[0][0]
        if usual != common:
            exceptions.setdefault(usual, []).append(task)
        for row, text in rows.items():
            if text != usual:
                exceptions.setdefault(text, []).append(f"{task} {row}")
    others = [f"{', '.join(sorted(names))}: {text}" for text, names in exceptions.items()]
    return f"trained {common}" + (f" ({'; '.join(sorted(others))})" if others else "")


def _machine_text(results: list[dict[str, Any]]) -> str:
    machines = Counter()
    loads = []
    for result in results:
        machine = result.get("machine")
        if not machine:
            machines["not recorded"] += 1
            continue
        text = f"{machine['cpu']} ({machine['cpu_count']} cores)"
        if machine.get("gpu"):
            text += f", {machine['gpu']}"
        text += (
            f", device {machine['device']}, {machine['torch_threads']} torch thread"
            f"{'s' if machine['torch_threads'] != 1 else ''} per run, torch {machine['torch']}"
        )
        machines[text] += 1
        if "load_average_1min" in machine:
            loads.append(machine["load_average_1min"])
    text = "; ".join(sorted(machines))
    if loads:
        low, high = min(loads), max(loads)
        spread = f"{low:.1f}" if low == high else f"{low:.1f}–{high:.1f}"
        text += f"; 1-minute load average {spread} as the runs ended"
    return text


def _commit_text(commit: dict[str, Any] | None) -> str:
    if not commit:
        return "not recorded"
    return commit["hash"][:7] + (" with uncommitted changes" if commit["modified"] else "")


def compact_tables(results: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """Markdown lines of one table per task (rows by test length: sequence accuracy %, mean ±
    std over seeds, then (token accuracy %, mean)), then their :func:`provenance`."""
    tables = summarize(results)
    lines: list[str] = []
    for task in tasks:
        if task not in tables:
            raise ValueError(f"no results of task {task!r}; tasks: {', '.join(tables)}")
        rows = tables[task]
        lengths = _lengths_of_rows(rows)
        lines += [
            f"| {task} | params | steps | " + " | ".join(map(str, lengths)) + " |",
            "|---|---:|---:|" + "---:|" * len(lengths),
        ]
        for row in rows:
            cells = _length_cells(row, lengths)
            lines.append(
                f"| {row.row} | {row.params:,.0f} | {row.steps:,.0f} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    shown = [r for r in results if r["task"] in tasks]
    return [*lines, provenance(shown)]


def publish(bench_dir: str | Path, dest: str | Path) -> str:
    """Copies the result.json of every run in `bench_dir` (nothing else: no checkpoints) to
    DEST/runs/, replacing what DEST/runs held, and writes the report in DEST; its Markdown."""
    bench_dir, dest = Path(bench_dir), Path(dest)
    sources = sorted(bench_dir.glob(RESULT_GLOB))
    if not sources:
        raise FileNotFoundError(f"{bench_dir} holds no {RESULT_GLOB}")
    shutil.rmtree(dest / "runs", ignore_errors=True)
    for source in sources:
        target = dest / source.relative_to(bench_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return write_report(dest)


TABLE_START = re.compile(r"<!-- panm-table (\S+) (\S+) -->")
TABLE_END = "<!-- /panm-table -->"
SPLITS = "splits"
"""In place of the tasks: one table of the whole test set by split (`split_table`)."""
AVERAGES = "averages"
"""In place of the tasks: one table of accuracy averaged over the test lengths, a line per
task and row, of the Chomsky-hierarchy tasks (`length_average_table`)."""
FINAL_TEST_SET = "final"


def update_tables(path: str | Path) -> tuple[str, list[Path]]:
    """The text of Markdown file `path` with every panm-table block regenerated from its raw
    results (folders relative to `path`), and the folders the blocks read."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    out: list[str] = []
    folders: list[Path] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        match = TABLE_START.fullmatch(line.strip())
        if not match:
            continue
        end = next((i for i in range(index, len(lines)) if lines[i].strip() == TABLE_END), None)
        if end is None:
            raise ValueError(f"{path}:{index}: {line.strip()} has no {TABLE_END} after it")
        results = []
        for name in match.group(1).split("+"):
            folder = path.parent / name
            found = load_results(folder)
            if not found:
                raise ValueError(f"{path}:{index}: {folder} holds no {RESULT_GLOB}")
            folders.append(folder)
            results += found
        runs = Counter((r["task"], r["row"], r["seed"]) for r in results)
        twice = sorted(
            f"{task}/{row}/seed-{seed}" for (task, row, seed), n in runs.items() if n > 1
        )
        if twice:
            raise ValueError(f"{path}:{index}: runs in more than one folder: {', '.join(twice)}")
        if match.group(2) == SPLITS:
            table = split_table(results, heading=False)
            if not table:
                raise ValueError(f"{path}:{index}: no results with a split (SCAN) to show")
            table += ["", provenance(results)]
        elif match.group(2) == AVERAGES:
            table = length_average_table(results, heading=False)
            if not table:
                raise ValueError(f"{path}:{index}: no results of a Chomsky-hierarchy task")
            table += ["", provenance([r for r in results if r["task"] in CHOMSKY_TASKS])]
        else:
            table = compact_tables(results, match.group(2).split(","))
        out += [text + "\n" for text in table]
        out.append(lines[end])
        index = end + 1
    return "".join(out), folders


def published_folders(root: str | Path) -> list[Path]:
    """The folders under ROOT/docs that hold committed raw results (DIR/runs/*/*/*/result.json)."""
    docs = Path(root, "docs").resolve()
    return sorted({path.parents[4] for path in docs.glob(f"**/{RESULT_GLOB}")})


def check_published(root: str | Path) -> list[str]:
    """What differs between the published tables of the repository at `root` and what their
    raw results give: each problem as a line ([] when all agree). Checked: every panm-table
    block of README.md and docs/**/*.md, the report files (results.md/.csv/.json) of every
    folder of raw results under docs/, and that all those results are scored on the final
    test set, except in folders under docs/dev/ (development runs, labelled as such) that no
    panm-table block shows."""
    root = Path(root).resolve()
    problems = []
    folders = set(published_folders(root))
    in_tables: set[Path] = set()
    for path in [root / "README.md", *sorted(root.glob("docs/**/*.md"))]:
        text, read = update_tables(path)
        if text != path.read_text():
            problems.append(
                f"{path.relative_to(root)}: a panm-table block differs from its results"
            )
        in_tables.update(folder.resolve() for folder in read)
    folders |= in_tables
    development = root / "docs" / "dev"
    for folder in sorted(folders):
        name = folder.relative_to(root) if folder.is_relative_to(root) else folder
        for file, text in report_texts(folder).items():
            if not (folder / file).is_file() or (folder / file).read_text() != text:
                problems.append(f"{name}/{file} differs from its raw results (panm report)")
        if folder.is_relative_to(development) and folder not in in_tables:
            continue
        for result in load_results(folder):
            test_set = (result.get("test_set") or {}).get("name")
            if test_set != FINAL_TEST_SET:
                problems.append(
                    f"{name}/{result['run_dir']}: scored on test set {test_set!r}, not final"
                )
    return problems


def report_main(
    folder: str | None, publish_to: str | None, tables: list[str], check_root: str | None
) -> int:
    """`panm report [FOLDER [--publish DIR]] [--tables MARKDOWN...] [--check ROOT]`: rewrites a
    bench folder's report (or publishes its raw results to DIR), regenerates the panm-table
    blocks of the Markdown files, then checks every published table under ROOT. Returns 0, or 1
    when the check finds a table that differs from its raw results (each printed)."""
    if folder:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        if publish_to:
            publish(folder, publish_to)
            print(f"wrote {publish_to}/runs and its report", file=sys.stderr)
        else:
            write_report(folder)
            print(f"wrote the report of {folder}", file=sys.stderr)
    for name in tables:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        text, folders = update_tables(path)
        if text != path.read_text():
            atomic_write(path, lambda p, t=text: p.write_text(t))
        print(f"{path}: {len(folders)} table block(s) from their results", file=sys.stderr)
    if check_root:
        problems = check_published(check_root)
        for problem in problems:
            print(f"panm: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("every published table agrees with its raw results", file=sys.stderr)
    return 0


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


def _csv_text(results: list[dict[str, Any]]) -> str:
    lengths = _lengths(results)
    header = [*RUN_COLUMNS]
    for n in lengths:
        header += [f"sequence_accuracy@{n}", f"token_accuracy@{n}"]
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for result in results:
        tests = {t["length"]: t for t in result["test"]}
        line = [result.get(c, "") for c in RUN_COLUMNS]
        for n in lengths:
            test = tests.get(n, {})
            line += [test.get("sequence_accuracy", ""), test.get("token_accuracy", "")]
        writer.writerow(line)
    return text.getvalue()


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
