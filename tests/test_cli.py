"""The command line, end to end on tiny runs, and its handling of bad input."""

import json

import pytest

from panm.cli import main
from panm.tasks import TASK_NAMES

TINY = [
    "--set", "embed_dim=16",
    "--set", "panm.hidden_dim=16",
    "--set", "panm.pointer_dim=8",
    "--set", "panm.key_dim=8",
]  # fmt: skip
ALGORITHMIC = [t for t in TASK_NAMES if t != "scan"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_copy(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "copy"
    args = ["train", "--task", "copy", "--out", str(run), "--steps", "4", "--eval-every", "2",
            "--valid-count", "8", "--batch-size", "8", "--no-progress", *TINY]  # fmt: skip
    assert main(args) == 0
    return run


@pytest.mark.parametrize("task", ALGORITHMIC)
def test_data_writes_examples_with_targets(task, tmp_path, capsys):
    out = tmp_path / "data.jsonl"
    code, _, _ = run_cli(capsys, "data", "--task", task, "--length", 5, "--count", 7, "--out", out)
    assert code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 7 and all("target" in r and "seq" in r for r in rows)
    code, stdout, _ = run_cli(capsys, "data", "--task", task, "--length", 5, "--count", 7)
    assert code == 0 and stdout == out.read_text()


@pytest.mark.parametrize("task", ALGORITHMIC)
def test_train_eval_predict_each_task(task, tmp_path, capsys):
    run = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--task", task, "--out", run, "--steps", 2,
                                "--eval-every", 2, "--valid-count", 8, "--batch-size", 4,
                                "--no-progress", *TINY)  # fmt: skip
    assert code == 0, err
    assert "trained 2 steps" in stdout and "using 1 CPU thread" in err
    code, stdout, err = run_cli(capsys, "eval", "--checkpoint", run, "--lengths", "3,12",
                                "--count", 5)  # fmt: skip
    assert code == 0, err
    results = json.loads((run / "eval.json").read_text())["results"]
    assert set(results) == {"3", "12"} and results["12"]["count"] == 5
    assert "sequence acc" in stdout
    data = tmp_path / "in.jsonl"
    run_cli(capsys, "data", "--task", task, "--length", 4, "--count", 3, "--out", data)
    code, _, err = run_cli(capsys, "predict", "--checkpoint", run, "--in", data,
                           "--out", tmp_path / "out.jsonl")  # fmt: skip
    assert code == 0, err
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    inputs = [json.loads(x) for x in data.read_text().splitlines()]
    assert len(rows) == 3
    for row, original in zip(rows, inputs, strict=True):
        assert {k: v for k, v in row.items() if k != "output"} == original
        assert len(row["output"]) == len(original["target"])


def test_task_options_join_the_recipes(tmp_path, capsys):
    for flags, expected in [
        ([], {"close_ids": 0.5}),
        (["--task-option", "close_ids=0.2"], {"close_ids": 0.2}),
    ]:
        run = tmp_path / f"run{len(flags)}"
        code, _, err = run_cli(capsys, "train", "--task", "id_sort", "--out", run, "--steps", 1,
                               "--batch-size", 4, "--valid-count", 4, "--no-progress", *TINY,
                               *flags)  # fmt: skip
        assert code == 0, err
        assert json.loads((run / "run.json").read_text())["task_options"] == expected


def test_eval_with_random_bases_and_bad_settings(trained_copy, tmp_path, capsys):
    args = ["eval", "--checkpoint", trained_copy, "--lengths", "12", "--count", 6]
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        code, _, err = run_cli(capsys, *args, "--set", "panm.eval_base=random", "--out", out)
        assert code == 0, err
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]  # the random bases are drawn from --seed
    assert outs[0]["settings"] == {"panm.eval_base": "random"}
    code, _, err = run_cli(capsys, *args, "--set", "panm.address_bits=9")
    assert code == 2 and "do not fit the changed model" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, *args, "--set", "panm.eval_base=often")
    assert code == 2 and "eval_base must be one of" in err


def test_resume_from_the_command_line(trained_copy, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "train", "--out", trained_copy, "--resume", "--steps", 6,
                              "--no-progress")  # fmt: skip
    assert code == 0 and "trained 6 steps" in stdout


def bad_line(tmp_path, text):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "--task", "sort", "--length", "3"], "unknown task 'sort'; choose from: copy"),
        (["train", "--task", "copy", "--model", "gpt", "--out", "{tmp}/r"], "unknown model 'gpt'"),
        (["eval", "--checkpoint", "{tmp}/missing"], "does not exist"),
        (["train", "--out", "{tmp}/nothing", "--resume"], "cannot resume"),
        (["data", "--task", "copy", "--length", "0"], "length >= 1"),
        (["train", "--task", "copy", "--out", "{tmp}/r", "--set", "nope=1"], "unknown setting"),
        (["train", "--task", "copy", "--out", "{tmp}/r", "--split", "length"], "SCAN options"),
        (
            ["train", "--task", "copy", "--out", "{tmp}/r", "--task-option", "close_ids=0.5"],
            "unknown copy option(s) close_ids",
        ),
    ],
)
def test_bad_input_is_one_line_error(args, message, tmp_path, capsys):
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("panm: error:")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"seq": [1, 2]}\n{"seq": [1,\n', "bad.jsonl:2: malformed JSON"),
        ('{"seq": [1, 2]}\n{"sequence": [1]}\n', "bad.jsonl:2:"),
        ('{"seq": [1, 12]}\n', "bad.jsonl:1:"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"seq": [' + ", ".join(["1"] * 300) + "]}\n", "address_bits"),
    ],
)
def test_predict_bad_input(trained_copy, content, message, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "predict", "--checkpoint", trained_copy,
                           "--in", bad_line(tmp_path, content), "--out", out)  # fmt: skip
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_corrupt_checkpoint(trained_copy, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_copy, broken)
    for weights in broken.glob("checkpoints/*/model.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", broken, "--lengths", 5)
    assert code == 2 and "cannot load checkpoint" in err and "Traceback" not in err
    (broken / "checkpoint.json").write_text("{")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", broken, "--lengths", 5)
    assert code == 2 and "corrupt" in err
