"""The benchmark matrix (panm.bench) and its report (panm.report), on tiny runs."""

import csv
import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import panm.bench
from panm.bench import (
    QUICK,
    BenchConfig,
    bench_main,
    load_config,
    plan_runs,
    run_bench,
)
from panm.report import load_results, summarize, write_report

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {
    "tasks": ["copy"],
    "models": ["panm", "lstm"],
    "seeds": [0, 1],
    "steps": 2,
    "batch_size": 4,
    "test_lengths": [3, 12],
    "test_count": 4,
    "model_overrides": {
        "panm": {"embed_dim": 16, "panm.hidden_dim": 16, "panm.pointer_dim": 8, "panm.key_dim": 8},
        "lstm": {"hidden_dim": 16},
    },
    "variants": {
        "panm-no-base-sampling": {"model": "panm", "overrides": {"panm.base_sampling": False}}
    },
    "train_options": {"valid_count": 4, "eval_every": 2, "log_every": 1},
}
ROWS = ("panm", "lstm", "panm-no-base-sampling")


def tiny_config(**changes) -> BenchConfig:
    return BenchConfig.from_dict({**TINY, **changes})


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A finished tiny bench (3 rows x 2 seeds), run once for the module; copy it to change it."""
    out = tmp_path_factory.mktemp("bench")
    outcomes = run_bench(tiny_config(), out, jobs=1, progress=False)
    return out, outcomes


def copy_of(tiny_bench, tmp_path) -> Path:
    out = tmp_path / "bench"
    shutil.copytree(tiny_bench[0], out)
    return out


def count_train_calls(monkeypatch) -> list[bool]:
    """Counts calls of the bench's `train`, recording each call's `resume` flag."""
    calls: list[bool] = []
    real = panm.bench.train

    def counting(config, run_dir, resume=False, progress=True):
        calls.append(resume)
        return real(config, run_dir, resume=resume, progress=progress)

    monkeypatch.setattr(panm.bench, "train", counting)
    return calls


def test_tiny_bench_writes_every_file(tiny_bench):
    out, outcomes = tiny_bench
    assert len(outcomes) == 6 and not [o for o in outcomes if "error" in o]
    assert [(o["seed"], o["row"]) for o in outcomes] == [(s, r) for s in (0, 1) for r in ROWS]
    result = json.loads((out / "runs/copy/panm-no-base-sampling/seed-1/result.json").read_text())
    assert result["model"] == "panm" and result["steps"] == 2 and result["best_step"] == 2
    assert result["variant_overrides"] == {"panm.base_sampling": False}
    assert result["settings"]["train"]["model_overrides"]["panm.base_sampling"] is False
    assert result["settings"]["train"]["model_overrides"]["panm.decoy_slots"] == 8  # the recipe's
    assert [t["length"] for t in result["test"]] == [3, 12]
    assert all(t["count"] == 4 for t in result["test"])
    assert result["params"] > 0 and result["train_seconds"] > 0
    assert json.loads((out / "bench.json").read_text()) == tiny_config().to_dict()

    markdown = write_report(out)
    for name in ("results.json", "results.csv", "results.md", "plot_copy.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "results.md").read_text() == markdown
    assert "Command: unknown" in markdown and "## copy" in markdown  # run_bench without one
    assert "| 3 | 12 |" in markdown
    table_rows = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")]
    assert table_rows == ["| row", "| panm", "| panm-no-base-sampling", "| lstm"]
    assert "- panm-no-base-sampling: panm with panm.base_sampling=false" in markdown
    with open(out / "results.csv") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 6 and {"sequence_accuracy@12", "token_accuracy@3"} <= set(lines[0])
    assert len(json.loads((out / "results.json").read_text())) == 6


def test_second_run_recomputes_nothing(tiny_bench, tmp_path, monkeypatch):
    out = copy_of(tiny_bench, tmp_path)
    results = sorted(out.glob("runs/*/*/*/result.json"))
    before = [p.stat().st_mtime_ns for p in results]
    calls = count_train_calls(monkeypatch)
    outcomes = run_bench(tiny_config(), out, jobs=1, progress=False)
    assert calls == []
    assert [p.stat().st_mtime_ns for p in results] == before
    assert outcomes == tiny_bench[1]


def test_results_stored_before_a_config_field_changed_form_are_still_finished(
    tiny_bench, tmp_path, monkeypatch
):
    """Results written when `compile` was a boolean (and before a field existed) still count."""
    out = copy_of(tiny_bench, tmp_path)
    for path in out.glob("runs/*/*/*/result.json"):
        result = json.loads(path.read_text())
        result["settings"]["train"]["compile"] = False
        del result["settings"]["train"]["train_examples"]  # as before that field existed
        path.write_text(json.dumps(result))
    calls = count_train_calls(monkeypatch)
    run_bench(tiny_config(), out, jobs=1, progress=False)
    assert calls == []


def test_an_unfinished_run_from_before_compile_modes_resumes(tiny_bench, tmp_path, monkeypatch):
    out = copy_of(tiny_bench, tmp_path)
    run_dir = out / "runs/copy/lstm/seed-1"
    (run_dir / "result.json").unlink()
    stored = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**stored, "compile": False}))
    calls = count_train_calls(monkeypatch)
    outcomes = run_bench(tiny_config(), out, jobs=1, progress=False)
    assert calls == [True] and not [o for o in outcomes if "error" in o]


def test_run_without_result_is_resumed(tiny_bench, tmp_path, monkeypatch, capsys):
    out = copy_of(tiny_bench, tmp_path)
    (out / "runs/copy/lstm/seed-1/result.json").unlink()
    calls = count_train_calls(monkeypatch)
    outcomes = run_bench(tiny_config(), out, jobs=1, progress=True)
    assert calls == [True]
    err = capsys.readouterr().err
    assert "6 runs, 5 already done, 1 to do" in err and "[5/6] resumed copy/lstm/seed-1" in err
    assert outcomes == [*tiny_bench[1][:4], outcomes[4], *tiny_bench[1][5:]]
    assert outcomes[4]["test"] == tiny_bench[1][4]["test"]  # same checkpoint, same examples


def test_raised_budget_continues_training(tiny_bench, tmp_path, monkeypatch):
    out = copy_of(tiny_bench, tmp_path)
    calls = count_train_calls(monkeypatch)
    config = tiny_config(steps=3, models=["lstm"], variants={})
    outcomes = run_bench(config, out, jobs=1, progress=False)
    assert calls == [True, True] and [o["steps"] for o in outcomes] == [3, 3]


def test_a_run_records_the_commit_it_started_from(tmp_path, monkeypatch):
    """A checkout changed while a run trains (here: the commit the source reports changes once
    training is done) does not change the commit the run's result names."""
    trained = []
    real_train = panm.bench.train

    def train_then_change_checkout(*args, **kwargs):
        result = real_train(*args, **kwargs)
        trained.append(True)
        return result

    monkeypatch.setattr(panm.bench, "train", train_then_change_checkout)
    monkeypatch.setattr(
        panm.bench, "source_commit", lambda: {"hash": "later" if trained else "started"}
    )
    config = tiny_config(models=["lstm"], seeds=[0], variants={})
    (outcome,) = run_bench(config, tmp_path, jobs=1, progress=False)
    assert trained and outcome["commit"]["hash"] == "started"


def test_changed_run_settings_fail_that_run_only(tiny_bench, tmp_path):
    out = copy_of(tiny_bench, tmp_path)
    overrides = {**TINY["model_overrides"], "lstm": {"hidden_dim": 8}}
    outcomes = run_bench(tiny_config(model_overrides=overrides), out, jobs=1, progress=False)
    failed = [o for o in outcomes if "error" in o]
    assert [o["row"] for o in failed] == ["lstm", "lstm"]
    assert "holds a run with other settings (model_overrides)" in failed[0]["error"]
    assert (out / failed[0]["run_dir"] / "error.txt").is_file()
    assert "## Failed runs" in write_report(out)


def test_a_setting_named_at_its_default_is_the_same_run(tiny_bench, tmp_path, monkeypatch):
    out = copy_of(tiny_bench, tmp_path)
    calls = count_train_calls(monkeypatch)
    overrides = {**TINY["model_overrides"], "panm": {**TINY["model_overrides"]["panm"]}}
    overrides["panm"]["panm.num_mode1"] = 2  # the default, not named by the recipe
    config = tiny_config(model_overrides=overrides, models=["panm"], variants={})
    outcomes = run_bench(config, out, jobs=1, progress=False)
    assert not [o for o in outcomes if "error" in o]
    assert calls == [True, True]  # resumed (the results' recorded settings changed) ...
    assert [o["steps"] for o in outcomes] == [2, 2]  # ... and tested again, not trained further


def test_changed_evaluation_setting_retests_without_training(tiny_bench, tmp_path, monkeypatch):
    out = copy_of(tiny_bench, tmp_path)
    calls = count_train_calls(monkeypatch)
    tested = []
    real = panm.bench.evaluate_lengths

    def recording(model, *args, **kwargs):
        tested.append(model.config.panm.eval_base)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(panm.bench, "evaluate_lengths", recording)
    overrides = {**TINY["model_overrides"], "panm": {**TINY["model_overrides"]["panm"]}}
    overrides["panm"]["panm.eval_base"] = "random"
    config = tiny_config(model_overrides=overrides, models=["panm"], variants={})
    outcomes = run_bench(config, out, jobs=1, progress=False)
    assert calls == [True, True] and tested == ["random", "random"]
    assert [o["steps"] for o in outcomes] == [2, 2]  # finished runs: no more training
    stored = json.loads((out / "runs/copy/panm/seed-0/run.json").read_text())
    assert "panm.eval_base" not in stored["model_overrides"]  # the run itself is unchanged
    assert outcomes[0]["settings"]["train"]["model_overrides"]["panm.eval_base"] == "random"
    run_bench(tiny_config(models=["panm"], variants={}), out, jobs=1, progress=False)
    assert tested[2:] == ["zero", "zero"]  # a removed setting is back to its default


def test_failed_run_is_reported_and_the_rest_go_on(tmp_path, monkeypatch, capsys):
    real = panm.bench.train

    def broken_lstm(config, run_dir, resume=False, progress=True):
        if config.model == "lstm":
            raise RuntimeError("lstm exploded")
        return real(config, run_dir, resume=resume, progress=progress)

    monkeypatch.setattr(panm.bench, "train", broken_lstm)
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps({**TINY, "seeds": [0], "variants": {}}))
    out = tmp_path / "out"
    assert bench_main(str(config_file), False, str(out), 1, True) == 1
    captured = capsys.readouterr()
    assert "| panm |" in captured.out and "- runs/copy/lstm/seed-0: RuntimeError" in captured.out
    assert "[2/2, 1 failed] copy/lstm/seed-0" in captured.err
    assert "1 of 2 runs failed" in captured.err
    assert "lstm exploded" in (out / "runs/copy/lstm/seed-0/error.txt").read_text()

    monkeypatch.setattr(panm.bench, "train", real)  # fixed: only the failed run is redone
    assert bench_main(str(config_file), False, str(out), 1, False) == 0
    assert not (out / "runs/copy/lstm/seed-0/error.txt").exists()
    assert "Failed runs" not in capsys.readouterr().out


def test_device_flag_reaches_every_run(tmp_path, monkeypatch):
    seen = {}

    def fake_run_bench(config, out, jobs, progress, command):
        seen["devices"] = {spec.train.device for spec in plan_runs(config)}
        seen["command"] = command
        return []

    def fake_report(out):
        return ""

    monkeypatch.setattr(panm.bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(panm.bench, "write_report", fake_report)
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY))
    assert bench_main(str(config_file), False, str(tmp_path), 1, False, device="cuda:1") == 0
    assert seen["devices"] == {"cuda:1"} and seen["command"].endswith("--jobs 1 --device cuda:1")


def test_parallel_runs_in_spawned_processes(tmp_path):
    config = tiny_config(models=["lstm"], variants={}, seeds=[0, 1])
    outcomes = run_bench(config, tmp_path, jobs=2, progress=False)
    assert [(o["row"], o["seed"], "error" in o) for o in outcomes] == [
        ("lstm", 0, False),
        ("lstm", 1, False),
    ]
    assert run_bench(config, tmp_path, jobs=2, progress=False) == outcomes


def hand_made_result(row: str, seed: int, sequence: list[float], token: list[float]) -> dict:
    return {
        "task": "reverse",
        "row": row,
        "model": "lstm",
        "seed": seed,
        "variant_overrides": {},
        "params": 1000,
        "train_seconds": 60.0 * (seed + 1),
        "test_seconds": 1.0,
        "steps": 10,
        "best_step": 10,
        "valid_sequence_accuracy": 1.0,
        "valid_token_accuracy": 1.0,
        "train_lengths": [1, 10],
        "test": [
            {"length": n, "sequence_accuracy": s, "token_accuracy": t, "count": 100}
            for n, s, t in zip((11, 22), sequence, token, strict=True)
        ],
        "run_dir": f"runs/reverse/{row}/seed-{seed}",
        "settings": {},
    }


def test_report_statistics(tmp_path):
    results = [
        hand_made_result("lstm", 0, [0.5, 0.0], [0.8, 0.3]),
        hand_made_result("lstm", 1, [1.0, 0.1], [1.0, 0.5]),
        hand_made_result("lstm", 2, [0.6, 0.2], [0.9, 0.4]),
    ]
    for result in results:
        path = tmp_path / result["run_dir"] / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(result))
    assert load_results(tmp_path) == results
    (row,) = summarize(results)["reverse"]
    assert row.seeds == [0, 1, 2] and row.train_seconds == pytest.approx(120.0)
    assert row.sequence[11].mean == pytest.approx(0.7)
    assert row.sequence[11].std == pytest.approx(0.26457513)  # sample std (n - 1)
    assert row.sequence[22].mean == pytest.approx(0.1)
    assert row.sequence[22].std == pytest.approx(0.1)
    assert row.token[11].mean == pytest.approx(0.9)
    markdown = write_report(tmp_path)
    cells = "| lstm | 1,000 | 3 | 10 | 2.0 min | 100.0 ± 0.0 | 70.0 ± 26.5 (90.0) | 10.0 ± 10.0 "
    assert cells in markdown
    assert "Seeds 0, 1, 2; test set not recorded, 100 sequences per length" in markdown
    assert "on lengths 1–10" in markdown


def test_quick_preset_matches_its_file():
    assert load_config(CONFIGS / "quick.json") == QUICK
    assert len(plan_runs(QUICK)) == 8
    extrapolation = load_config(CONFIGS / "extrapolation.json")
    assert len(plan_runs(extrapolation)) == 6 * (5 + 10) * 3


def test_every_committed_config_loads():
    for path in sorted(CONFIGS.glob("**/*.json")):
        assert plan_runs(load_config(path)), path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown bench setting(s) 'colour'"),
        ({"tasks": ["copy", "sort"]}, "tasks: unknown name 'sort'"),
        ({"models": ["panm", "gpt"]}, "models: unknown name 'gpt'"),
        ({"models": ["lstm", "lstm"]}, "lists a name twice"),
        ({"seeds": "0"}, "seeds must be a list of integers"),
        ({"seeds": []}, "at least one seed"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"minutes": 0}, "minutes must be > 0"),
        ({"test_lengths": [3, 0]}, "test_lengths must be >= 1"),
        ({"model_overrides": {"gru": {}}}, "model_overrides: unknown model 'gru'"),
        ({"variants": {"lstm": {"model": "lstm"}}}, "is a model name"),
        ({"variants": {"a/b": {"model": "lstm"}}}, "must be letters"),
        ({"variants": {"x": {"model": "gru"}}}, "model must be one of"),
        ({"variants": {"x": {"model": "lstm", "extra": 1}}}, "unknown key(s) ['extra']"),
        ({"train_options": {"seed": 3}}, "bench-managed setting 'seed'"),
        ({"models": [], "variants": {}}, "at least one model or variant"),
        ({"splits": "cutoff-26"}, "splits must be a list of split names"),
        ({"splits": []}, "splits must list distinct split names"),
        (
            {"splits": ["cutoff-26"], "train_options": {"task_options": {"split": "length"}}},
            "either in splits or in task_options",
        ),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError) as error:
        tiny_config(**changes)
    assert message in str(error.value)


def test_config_file_and_model_setting_errors(tmp_path):
    with pytest.raises(ValueError, match="missing bench setting"):
        BenchConfig.from_dict({"tasks": ["copy"]})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        load_config(bad)
    bad.write_text(json.dumps({**TINY, "steps": -1}))
    with pytest.raises(ValueError, match=r"bad\.json: steps must be >= 1"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.json")
    typo = tiny_config(model_overrides={"lstm": {"hiden_dim": 16}})
    with pytest.raises(ValueError, match="row 'lstm' on task 'copy': unknown setting 'hiden_dim'"):
        plan_runs(typo)
    with pytest.raises(ValueError, match="give either"):
        bench_main(None, False, str(tmp_path), 1, False)


def test_report_without_matplotlib_skips_plots(tiny_bench, tmp_path, monkeypatch, capsys):
    out = copy_of(tiny_bench, tmp_path)
    (out / "plot_copy.png").unlink(missing_ok=True)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "matplotlib" else real(name)
    )
    write_report(out)
    assert (out / "results.md").is_file() and not (out / "plot_copy.png").exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_scan_splits_are_tables_of_their_own_and_a_table_by_split(tmp_path):
    config = BenchConfig.from_dict(
        {
            "tasks": ["scan"],
            "splits": ["cutoff-44", "cutoff-46"],
            "models": ["transformer"],
            "steps": 1,
            "batch_size": 4,
            "model_overrides": {
                "transformer": {"d_model": 8, "num_heads": 2, "ff_dim": 8, "encoder_layers": 1}
            },
            "train_options": {"valid_count": 4, "eval_every": 1},
        }
    )
    with pytest.raises(ValueError, match="task 'scan-random': unknown SCAN split"):
        plan_runs(dataclasses.replace(config, splits=["random"]))
    outcomes = run_bench(config, tmp_path, jobs=1, progress=False)
    assert [o["task"] for o in outcomes] == ["scan-cutoff-44", "scan-cutoff-46"]
    for outcome, split in zip(outcomes, config.splits, strict=True):
        assert outcome["task_options"] == {"split": split}
        assert (tmp_path / "runs" / f"scan-{split}" / "transformer" / "seed-0").is_dir()
        whole = outcome["test"][-1]
        assert whole["length"] == "all" and 0.0 <= whole["oracle_sequence_accuracy"] <= 1.0
        # every test output is longer than the cut-off
        assert all(t["length"] > int(split.split("-")[1]) for t in outcome["test"][:-1])
    markdown = write_report(tmp_path)
    assert "## Whole test set, by split" in markdown
    assert "| row | cutoff-44 | cutoff-46 |" in markdown
    assert "## scan-cutoff-44" in markdown and "## scan-cutoff-46" in markdown
    (line,) = [row for row in markdown.splitlines() if row.startswith("| transformer | ")][:1]
    cells = [cell.strip() for cell in line.strip("|").split("|")[1:]]
    for cell, outcome in zip(cells, outcomes, strict=True):
        whole = outcome["test"][-1]
        expected = f"{100 * whole['sequence_accuracy']:.1f} "
        expected += f"({100 * whole['oracle_sequence_accuracy']:.1f}), n=1"
        assert cell == expected
