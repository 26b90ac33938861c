"""The speed benchmark (panm.speed) on tiny settings: structure and ratios, never absolute times."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from panm.authors_code import authors_copy_setup, load_authors_code
from panm.speed import (
    AUTHORS_ROW,
    REFERENCE_MODEL,
    SpeedConfig,
    address_bits_for,
    format_table,
    model_setups,
    run_speed,
    speed_main,
)

TINY = SpeedConfig.quick(
    width=16,
    batch_size=4,
    train_length=4,
    eval_lengths=(3, 6, 12),
    eval_batch_size=2,
    repeats=2,
    calls=1,
    extra_overrides={
        "panm": {"panm.pointer_dim": 8, "panm.key_dim": 8},
        "panm-paper": {"panm.pointer_dim": 8, "panm.key_dim": 8},
    },
)
ROWS = ("panm", "panm-paper", "attention")
# The authors' code, beside the repository (shared/ next to the clone, as in CI).
AUTHORS_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "authors-panm"
needs_authors = pytest.mark.skipif(
    not (AUTHORS_DIR / "baselines" / "panm.py").is_file(),
    reason=f"the authors' code is not at {AUTHORS_DIR} (needs shared/ beside the repo)",
)


@pytest.fixture(scope="module")
def results() -> dict:
    return run_speed(TINY, quick=True)


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_results_have_every_field(results):
    assert set(results) == {"meta", "throughput", "scaling", "ratios"}
    meta = results["meta"]
    for key in ("date", "torch_version", "threads", "device", "quick", "config", "platform", "cpu"):
        assert key in meta
    assert meta["threads"] == 1 and meta["device"] == "cpu" and meta["quick"] is True
    assert meta["torch_version"] == torch.__version__
    assert meta["config"]["width"] == 16
    assert set(results["throughput"]["models"]) == set(ROWS)
    assert set(results["ratios"]) == {
        "train_step_over_attention",
        "eval_step_over_attention",
        "train_over_authors",
        "eval_over_authors",
        "eval_normalised_cost",
    }
    json.dumps(results)  # JSON-ready


def test_without_authors_code_there_is_no_authors_row(results):
    assert AUTHORS_ROW not in results["throughput"]["models"]
    assert results["ratios"]["train_over_authors"] is None
    assert results["ratios"]["eval_over_authors"] is None
    assert "No authors row" in format_table(results)


def test_throughputs_are_positive_and_raw_timings_kept(results):
    data = results["throughput"]["data"]
    assert len(data["seconds"]) == TINY.repeats and _positive(data["median_seconds"])
    for row in ROWS:
        model = results["throughput"]["models"][row]
        assert model["parameters"] > 0
        for phase in ("train", "eval"):
            summary = model[phase]
            assert len(summary["seconds"]) == TINY.repeats
            assert all(_positive(s) for s in summary["seconds"])
            assert _positive(summary["sequences_per_second"])
            assert summary["sequences_per_second"] == pytest.approx(
                TINY.batch_size / summary["median_seconds"]
            )


def test_ratios_are_consistent(results):
    models, ratios = results["throughput"]["models"], results["ratios"]
    for row in ("panm", "panm-paper"):
        expected = (
            models[row]["train"]["median_seconds"]
            / models[REFERENCE_MODEL]["train"]["median_seconds"]
        )
        assert ratios["train_step_over_attention"][row] == pytest.approx(expected)
        assert _positive(ratios["eval_step_over_attention"][row])


@needs_authors
def test_authors_row_is_timed_beside_ours():
    results = run_speed(replace(TINY, authors_code=str(AUTHORS_DIR)), quick=True)
    models, ratios = results["throughput"]["models"], results["ratios"]
    assert set(models) == {*ROWS, AUTHORS_ROW}
    authors = models[AUTHORS_ROW]
    assert authors["directory"] == str(AUTHORS_DIR.resolve())
    assert len(authors["model_sha256"]) == 64 and "RMSprop" in authors["optimizer"]
    for phase in ("train", "eval"):
        assert len(authors[phase]["seconds"]) == TINY.repeats
        assert all(_positive(s) for s in authors[phase]["seconds"])
        assert set(ratios[f"{phase}_over_authors"]) == set(ROWS)
        for row in ROWS:
            assert ratios[f"{phase}_over_authors"][row] == pytest.approx(
                models[row][phase]["sequences_per_second"] / authors[phase]["sequences_per_second"]
            )
    assert ratios["train_step_over_attention"][AUTHORS_ROW] == pytest.approx(
        authors["train"]["median_seconds"] / models[REFERENCE_MODEL]["train"]["median_seconds"]
    )
    table = format_table(results)
    assert "Throughput / the authors' code (train): panm " in table
    assert any(line.split()[:1] == [AUTHORS_ROW] for line in table.splitlines())
    json.dumps(results)


@needs_authors
def test_authors_model_is_their_copy_configuration():
    """Their README: 756,010 parameters at hidden 128; the step trains (loss changes, weights
    move) and evaluation leaves the weights alone."""
    setup = authors_copy_setup(
        load_authors_code(AUTHORS_DIR), 128, 2, 3, torch.device("cpu"), seed=0
    )
    assert setup.parameters == 756_010
    before = [p.detach().clone() for p in setup.model.parameters()]
    setup.eval_step()
    assert all(torch.equal(a, p) for a, p in zip(before, setup.model.parameters(), strict=True))
    setup.train_step()
    assert any(not torch.equal(a, p) for a, p in zip(before, setup.model.parameters(), strict=True))
    grads = [p.grad for p in setup.model.parameters() if p.grad is not None]
    assert grads and all(g.abs().max() <= 10.0 for g in grads)  # clipped by value


def test_authors_code_folder_must_hold_their_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no baselines/panm\.py"):
        load_authors_code(tmp_path)
    (tmp_path / "baselines").mkdir()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "baselines" / "panm.py").write_text("X = 1\n")
    (tmp_path / "datasets" / "copy.py").write_text("Y = 1\n")
    with pytest.raises(ValueError, match="must define PANM"):
        load_authors_code(tmp_path)


def test_cli_reports_a_bad_authors_folder(tmp_path, capsys):
    from panm.cli import main

    assert main(["bench-speed", "--quick", "--authors-code", str(tmp_path / "missing")]) == 2
    assert "no baselines/panm.py" in capsys.readouterr().err


def test_eval_scaling_is_normalised_to_the_shortest_length(results):
    scaling = results["scaling"]
    rows = scaling["lengths"]
    assert [row["length"] for row in rows] == [3, 6, 12]
    assert all(row["steps"] == row["length"] for row in rows)
    assert rows[0]["normalised_cost"] == pytest.approx(1.0)
    for row in rows:
        assert _positive(row["seconds_per_sequence"]) and _positive(row["normalised_cost"])
        expected = row["cost_per_slot_step"] / rows[0]["cost_per_slot_step"]
        assert row["normalised_cost"] == pytest.approx(expected)
    assert scaling["max_normalised_cost"] == max(row["normalised_cost"] for row in rows)
    assert set(results["ratios"]["eval_normalised_cost"]) == {"3", "6", "12"}


def test_table_lists_every_model_and_length(results):
    table = format_table(results)
    for word in (*ROWS, "cost/(L*T)"):
        assert word in table
    assert any(line.split()[:1] == ["12"] for line in table.splitlines())


def test_setups_are_equal_width_and_paper_literal():
    setups = model_setups(64)
    assert setups["attention"] == ("attention", {"hidden_dim": 64})
    for row in ("panm", "panm-paper"):
        assert setups[row][1]["embed_dim"] == 64 and setups[row][1]["panm.hidden_dim"] == 64
    paper = setups["panm-paper"][1]
    assert paper["encoder"] == "gru" and paper["panm.address_similarity"] == "dot"
    assert paper["panm.decoy_slots"] == 0


def test_address_bits_cover_the_longest_length():
    assert address_bits_for(11) == 8
    assert address_bits_for(1000) == 10
    assert 2 ** address_bits_for(1025) >= 1025


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="repeats"):
        SpeedConfig(repeats=0)
    with pytest.raises(ValueError, match="eval_lengths"):
        SpeedConfig(eval_lengths=())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            run_speed(SpeedConfig(device="cuda"))


def test_speed_main_writes_json(tmp_path, monkeypatch, capsys):
    import panm.speed

    monkeypatch.setattr(panm.speed.SpeedConfig, "quick", classmethod(lambda cls, **kw: TINY))
    out = tmp_path / "speed.json"
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert speed_main(str(out), quick=True, device="cpu") == 0
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(previous)
    written = json.loads(out.read_text())
    assert written["meta"]["threads"] == 1  # the benchmark itself ran single-threaded
    assert set(written) == {"meta", "throughput", "scaling", "ratios"}
    assert "panm-paper" in capsys.readouterr().out


@needs_authors
def test_cli_times_the_authors_code(tmp_path, monkeypatch):
    import panm.speed
    from panm.cli import main

    monkeypatch.setattr(
        panm.speed.SpeedConfig, "quick", classmethod(lambda cls, **kw: replace(TINY, **kw))
    )
    out = tmp_path / "speed.json"
    args = ["bench-speed", "--quick", "--authors-code", str(AUTHORS_DIR), "--out", str(out)]
    assert main(args) == 0
    written = json.loads(out.read_text())
    assert written["meta"]["config"]["authors_code"] == str(AUTHORS_DIR)
    assert AUTHORS_ROW in written["throughput"]["models"]
    assert set(written["ratios"]["train_over_authors"]) == set(ROWS)


@pytest.mark.parametrize(
    ("flags", "mode"),
    [(["--compile"], "default"), (["--compile", "reduce-overhead"], "reduce-overhead")],
)
def test_compile_flag_reaches_the_benchmark(results, tmp_path, monkeypatch, capsys, flags, mode):
    """`bench-speed --compile [MODE]` asks for the compiled rows in that mode; the table reports
    their compile time apart (the compiling itself is the slow test below)."""
    import panm.speed
    from panm.cli import main

    configs = []
    with_compiled = json.loads(json.dumps(results))
    with_compiled["meta"]["config"]["compile"] = mode
    models = with_compiled["throughput"]["models"]
    models["panm compiled"] = {**models["panm"], "compile_seconds": {"train": 61.0, "eval": 9.0}}
    monkeypatch.setattr(
        panm.speed, "run_speed", lambda config, quick: configs.append(config) or with_compiled
    )
    assert main(["bench-speed", "--quick", *flags, "--out", str(tmp_path / "s.json")]) == 0
    assert len(configs) == 1 and configs[0].compile == mode
    out = capsys.readouterr().out
    assert "panm compiled" in out
    expected = f"(panm compiled, mode {mode}: compiling, not timed above: 61 s for training, 9 s"
    assert expected in out


def test_speed_config_takes_compile_modes_and_the_old_boolean():
    assert SpeedConfig(compile=True).compile == "default"
    assert SpeedConfig(compile=False).compile is None
    with pytest.raises(ValueError, match="compile mode"):
        SpeedConfig(compile="fastest")


def test_compile_modes_and_their_options():
    from panm.training import compile_options

    assert compile_options() == {"fallback_random": True}
    assert compile_options("reduce-overhead") == {
        "fallback_random": True,
        "triton.cudagraphs": True,
    }
    with pytest.raises(ValueError, match="compile mode"):
        compile_options("max-speed")


@pytest.mark.slow  # two cold torch.compile runs: minutes on the shared 2-core machine
@pytest.mark.parametrize("row", ["panm", "attention"])
def test_compiled_rows_compute_the_eager_step(row):
    """The compiled copy that `SpeedConfig.compile` times computes the eager model's loss and
    gradients (same weights, same random draws)."""
    from panm.speed import build_row, fixed_batch
    from panm.tasks import get_task
    from panm.training import compile_options, sequence_loss

    task = get_task("copy")
    batch = fixed_batch(task, TINY.train_length, TINY.batch_size, 0)
    results = []
    for compiled in (False, True):
        model = build_row(model_setups(TINY.width), row, TINY, task)
        if compiled:
            model.compile(options=compile_options())
        torch.manual_seed(3)
        loss, _ = sequence_loss(model, batch, model.decoder_start_id(task), 1)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (eager_loss, eager_grads), (loss, grads) = results
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    for grad, eager_grad in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(grad, eager_grad, rtol=1e-4, atol=1e-5)
