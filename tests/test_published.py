"""Published tables are generated from committed raw results, and checked against them."""

import json
import shutil
from pathlib import Path

import pytest

from panm.cli import main
from panm.report import check_published, compact_tables, provenance, publish, update_tables

ROOT = Path(__file__).resolve().parents[1]


def test_every_published_table_agrees_with_its_raw_results():
    assert check_published(ROOT) == []


def raw_result(task: str, row: str, seed: int, sequence: float, test_set: str = "final") -> dict:
    """A result.json as panm.bench writes it (the fields the report reads)."""
    return {
        "task": task,
        "row": row,
        "model": row,
        "seed": seed,
        "variant_overrides": {},
        "params": 1234,
        "train_seconds": 90.0,
        "steps": 300 if row == "lstm" else 100,
        "stopped_by": "steps",
        "best_step": 100,
        "valid_sequence_accuracy": 1.0,
        "valid_token_accuracy": 1.0,
        "train_lengths": [1, 10],
        "test_set": {"name": test_set, "seed": 271_828 if test_set == "final" else 0},
        "test": [
            {"length": n, "sequence_accuracy": sequence / n, "token_accuracy": 1.0, "count": 50}
            for n in (11, 22)
        ],
        "run_dir": f"runs/{task}/{row}/seed-{seed}",
        "command": "panm bench tiny.json",
        "commit": {"hash": "0123456789abcdef", "modified": False},
        "machine": {
            "cpu": "Some CPU",
            "cpu_count": 2,
            "torch_threads": 1,
            "torch": "2.13.0",
            "python": "3.11",
            "device": "cpu",
            "load_average_1min": 1.5 + seed,
        },
        "settings": {"train": {"steps": 300 if row == "lstm" else 100, "minutes": 30.0}},
    }


def write_bench(bench: Path, results: list[dict]) -> Path:
    """A bench folder holding `results` as its runs' result.json files."""
    for result in results:
        path = bench / result["run_dir"] / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(result))
    return bench


def with_steps(result: dict, steps: int) -> dict:
    result["settings"] = {"train": {"steps": steps, "minutes": 30.0}}
    return result


@pytest.fixture
def repo(tmp_path) -> Path:
    """A tiny repository: a bench folder published to docs/tiny, and a README showing it."""
    bench = tmp_path / "bench_out"
    for result in [
        raw_result("copy", "panm", 0, 11.0),
        raw_result("copy", "panm", 1, 5.5),
        raw_result("copy", "lstm", 0, 0.0),
        raw_result("reverse", "panm", 0, 11.0),
    ]:
        path = bench / result["run_dir"] / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(result))
        (path.parent / "checkpoints").mkdir()
    root = tmp_path / "repo"
    publish(bench, root / "docs" / "tiny")
    readme = root / "README.md"
    readme.write_text("# x\n\n<!-- panm-table docs/tiny copy -->\nold\n<!-- /panm-table -->\nend\n")
    text, folders = update_tables(readme)
    readme.write_text(text)
    assert folders == [root / "docs" / "tiny"]
    return root


def test_publish_copies_results_only_and_writes_the_report(repo):
    tiny = repo / "docs" / "tiny"
    files = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file())
    assert [f for f in files if f.startswith("runs/")] == [
        "runs/copy/lstm/seed-0/result.json",
        "runs/copy/panm/seed-0/result.json",
        "runs/copy/panm/seed-1/result.json",
        "runs/reverse/panm/seed-0/result.json",
    ]
    assert {"results.md", "results.csv", "results.json"} <= set(files)
    assert check_published(repo) == []


def test_generated_block(repo):
    text = (repo / "README.md").read_text()
    assert text.startswith("# x\n\n<!-- panm-table docs/tiny copy -->\n| copy | params | steps |")
    assert "| panm | 1,234 | 100 | 75.0 ± 35.4 (100.0) | 37.5 ± 17.7 (100.0) |" in text
    assert "| lstm | 1,234 | 300 | 0.0 (100.0) | 0.0 (100.0) |" in text
    assert "reverse" not in text.split("<!-- /panm-table -->")[0].split("\n", 3)[3]
    assert text.endswith("<!-- /panm-table -->\nend\n")


def test_provenance_states_what_the_figures_rest_on():
    results = [raw_result("copy", "panm", 0, 11.0), raw_result("copy", "lstm", 1, 0.0)]
    assert provenance(results) == (
        "Seed 0 (lstm: seed 1); final test set (seed 271828), 50 sequences per length; "
        "trained 100 steps or 30 minutes (lstm: 300 steps or 30 minutes) on lengths 1–10, "
        "every run made its full budget; checkpoint chosen on validation at lengths 1–10 only; "
        "machine: Some CPU (2 cores), device cpu, 1 torch thread per run, torch 2.13.0; "
        "1-minute load average 1.5–2.5 as the runs ended; commit 0123456."
    )
    # a row whose budget differs between tasks (a bench's task_steps): its task's is named
    reverse = with_steps(raw_result("reverse", "panm", 0, 11.0), 700)
    assert "(lstm: 300 steps or 30 minutes; reverse: 700 steps or 30 minutes)" in (
        provenance([*results, reverse])
    )
    # then the rows whose budget differs from their task's
    mixed = [
        with_steps(raw_result(task, row, 0, 0.0), steps)
        for task, row, steps in [
            ("copy", "panm", 100),
            ("copy", "lstm", 300),
            ("copy", "attention", 100),
            ("sort", "panm", 50),
            ("sort", "lstm", 900),
            ("sort", "attention", 900),
        ]
    ]
    assert (
        "trained 100 steps or 30 minutes (copy lstm: 300 steps or 30 minutes; "
        "sort panm: 50 steps or 30 minutes; sort: 900 steps or 30 minutes)"
    ) in provenance(mixed)
    stopped = {**results[0], "stopped_by": "time limit", "steps": 80}
    assert "stopped by the time limit before their step budget: copy/panm seed 0 (80 steps)" in (
        provenance([stopped])
    )


def test_block_of_several_folders(repo, tmp_path):
    results = [raw_result("copy", "attention", 0, 0.0), raw_result("copy", "panm", 1, 0.0)]
    publish(write_bench(tmp_path / "baselines", results), repo / "docs" / "more")
    readme = repo / "README.md"
    readme.write_text("<!-- panm-table docs/tiny+docs/more copy -->\n<!-- /panm-table -->\n")
    with pytest.raises(
        ValueError, match=r"README.md:1: runs in more than one folder: copy/panm/seed-1"
    ):
        update_tables(readme)
    shutil.rmtree(repo / "docs/more/runs/copy/panm")
    text, folders = update_tables(readme)
    assert folders == [repo / "docs" / "tiny", repo / "docs" / "more"]
    assert "| panm | 1,234 | 100 | 75.0 ± 35.4 (100.0) |" in text
    assert "| attention | 1,234 | 100 | 0.0 (100.0) |" in text
    assert "| lstm | 1,234 | 300 | 0.0 (100.0) |" in text
    # the rows' seeds differ: the seeds of most rows, then the others by row
    assert "\nSeed 0 (panm: seeds 0, 1); final test set" in text


def test_block_of_splits(repo, tmp_path):
    results = []
    for seed, exact in [(0, 0.5), (1, 0.25)]:
        result = raw_result("scan-cutoff-26", "transformer+panm", seed, 0.0)
        result["task_options"] = {"split": "cutoff-26"}
        result["test"].append(
            {
                "length": "all",
                "sequence_accuracy": exact,
                "token_accuracy": 0.9,
                "count": 100,
                "oracle_sequence_accuracy": 0.75,
            }
        )
        results.append(result)
    publish(write_bench(tmp_path / "scan", results), repo / "docs" / "scan")
    readme = repo / "README.md"
    readme.write_text("<!-- panm-table docs/scan splits -->\n<!-- /panm-table -->\n")
    text, _ = update_tables(readme)
    assert (
        "| row | cutoff-26 |\n|---|---:|\n| transformer+panm | 37.5 ± 17.7 (75.0), n=2 |\n" in text
    )
    assert "\nSeeds 0, 1; final test set" in text
    readme.write_text("<!-- panm-table docs/tiny splits -->\n<!-- /panm-table -->\n")
    with pytest.raises(ValueError, match=r"README.md:1: no results with a split"):
        update_tables(readme)


def test_block_of_averages(repo, tmp_path):
    results = []
    for task, seed, token in [("odds_first", 0, 0.8), ("odds_first", 1, 0.6), ("even_pairs", 0, 1)]:
        result = raw_result(task, "panm", seed, 0.0)
        result["test"] = [
            {"length": n, "sequence_accuracy": 0.0, "token_accuracy": token - d, "count": 10}
            for n, d in ((41, 0.0), (500, 0.1))
        ]
        results.append(result)
    publish(write_bench(tmp_path / "chomsky", results), repo / "docs" / "chomsky")
    readme = repo / "README.md"
    readme.write_text("<!-- panm-table docs/chomsky+docs/tiny averages -->\n<!-- /panm-table -->\n")
    text, _ = update_tables(readme)
    # odds_first: seed 0 (80 + 70) / 2 = 75%, seed 1 55%; copy (not a Chomsky task) left out
    assert text.startswith(
        "<!-- panm-table docs/chomsky+docs/tiny averages -->\n"
        "| task | row | n | per-token accuracy % | exact match % |\n|---|---|---:|---:|---:|\n"
    )
    assert "| odds_first | panm | 2 | 65.0 ± 14.1 (75.0) | 0.0 ± 0.0 (0.0) |\n" in text
    assert "| even_pairs | panm | 1 | 95.0 (95.0) | 0.0 (0.0) |\n" in text
    assert "copy" not in text
    assert "\nSeed 0 (odds_first panm: seeds 0, 1); final test set" in text
    readme.write_text("<!-- panm-table docs/tiny averages -->\n<!-- /panm-table -->\n")
    with pytest.raises(ValueError, match=r"README.md:1: no results of a Chomsky-hierarchy task"):
        update_tables(readme)


def test_provenance_names_batches_where_they_differ():
    small, large = raw_result("copy", "lstm", 0, 0.0), raw_result("copy", "panm", 0, 11.0)
    small["settings"]["train"]["batch_size"] = 64
    large["settings"]["train"]["batch_size"] = 2048
    assert "trained 100 steps of 2,048 or 30 minutes (lstm: 300 steps of 64 or 30 minutes)" in (
        provenance([large, small])
    )
    large["settings"]["train"]["batch_size"] = 64
    assert "trained 100 steps or 30 minutes (lstm: 300 steps or 30 minutes)" in (
        provenance([large, small])
    )


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            lambda root: _edit(root / "README.md", "| 0.0 (100.0) |", "| 1.0 (100.0) |"),
            "README.md: a panm-table block differs from its results",
        ),
        (
            lambda root: _edit(root / "docs/tiny/results.md", "75.0 ± 35.4", "75.0 ± 35.5"),
            "docs/tiny/results.md differs from its raw results",
        ),
        (
            lambda root: _edit(
                root / "docs/tiny/runs/copy/lstm/seed-0/result.json",
                '"sequence_accuracy": 0.0,',
                '"sequence_accuracy": 0.5,',
            ),
            "README.md: a panm-table block differs from its results",
        ),
        (
            lambda root: _edit(
                root / "docs/tiny/runs/reverse/panm/seed-0/result.json",
                '"name": "final"',
                '"name": "dev"',
            ),
            "docs/tiny/runs/reverse/panm/seed-0: scored on test set 'dev', not final",
        ),
        (
            lambda root: (root / "docs/tiny/results.csv").unlink(),
            "docs/tiny/results.csv differs from its raw results",
        ),
    ],
)
def test_check_finds_each_kind_of_mismatch(repo, change, problem):
    change(repo)
    assert problem in "\n".join(check_published(repo))


def test_development_results_belong_under_docs_dev_and_in_no_table(repo, tmp_path):
    bench = write_bench(tmp_path / "dev_bench", [raw_result("copy", "panm", 0, 11.0, "dev")])
    publish(bench, repo / "docs" / "dev" / "explore")
    assert check_published(repo) == []
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\n<!-- panm-table docs/dev/explore copy -->\n"
                      "<!-- /panm-table -->\n")  # fmt: skip
    readme.write_text(update_tables(readme)[0])
    assert check_published(repo) == [
        "docs/dev/explore/runs/copy/panm/seed-0: scored on test set 'dev', not final"
    ]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_block_errors(repo):
    readme = repo / "README.md"
    readme.write_text("a\n<!-- panm-table docs/tiny copy -->\n| x |\n")
    with pytest.raises(ValueError, match=r"README.md:2: .* has no <!-- /panm-table -->"):
        update_tables(readme)
    readme.write_text("<!-- panm-table docs/none copy -->\n<!-- /panm-table -->\n")
    with pytest.raises(ValueError, match=r"README.md:1: .*docs/none holds no runs"):
        update_tables(readme)
    results = [raw_result("copy", "panm", 0, 11.0)]
    with pytest.raises(ValueError, match="no results of task 'mix'; tasks: copy"):
        compact_tables(results, ["mix"])


def test_report_command(repo, tmp_path, capsys):
    readme = repo / "README.md"
    readme.write_text(readme.read_text().replace("| 1,234 |", "| 9 |"))
    assert main(["report", "--check", str(repo)]) == 1
    assert "README.md: a panm-table block differs" in capsys.readouterr().err
    assert main(["report", "--tables", str(readme)]) == 0
    assert main(["report", "--check", str(repo)]) == 0
    shutil.rmtree(repo / "docs/tiny/runs/copy/lstm")
    assert main(["report", str(repo / "docs/tiny")]) == 0
    assert "| lstm |" not in (repo / "docs/tiny/results.md").read_text()
    assert main(["report"]) == 2
    assert main(["report", "--publish", str(tmp_path / "x")]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "give a bench FOLDER" in err and "needs the bench FOLDER" in err
    assert "missing: no such folder" in err
