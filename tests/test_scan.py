"""SCAN: grammar, official data, splits, file format and the task."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from panm.tasks.base import collate
from panm.tasks.scan import (
    ACTIONS,
    COMMAND_WORDS,
    CUTOFFS,
    SPLITS,
    ScanTask,
    generate_scan,
    interpret,
    make_split,
    read_scan_file,
    write_scan_file,
    write_split,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scan"


def _official(name: str) -> list[dict]:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"official SCAN file {path} not found (needs shared/ beside the repo)")
    return read_scan_file(path)


def _as_set(pairs: list[dict]) -> set[tuple[str, str]]:
    return {(p["command"], " ".join(p["target"])) for p in pairs}


# --- grammar ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        ("walk", "I_WALK"),
        ("turn left", "I_TURN_LEFT"),
        ("jump right", "I_TURN_RIGHT I_JUMP"),
        ("walk opposite left", "I_TURN_LEFT I_TURN_LEFT I_WALK"),
        ("walk around left", "I_TURN_LEFT I_WALK " * 3 + "I_TURN_LEFT I_WALK"),
        ("turn opposite left", "I_TURN_LEFT I_TURN_LEFT"),
        ("turn around right", "I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT"),
        ("jump twice", "I_JUMP I_JUMP"),
        ("look left thrice", "I_TURN_LEFT I_LOOK I_TURN_LEFT I_LOOK I_TURN_LEFT I_LOOK"),
        ("run and jump twice", "I_RUN I_JUMP I_JUMP"),
        ("run after jump twice", "I_JUMP I_JUMP I_RUN"),
    ],
)
def test_interpret(command: str, actions: str) -> None:
    assert interpret(command) == actions.split()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "empty command"),
        ("jump fast", "unknown word 'fast'"),
        ("turn", "'turn' needs a direction"),
        ("twice", "needs a phrase"),
        ("jump jump", "not a SCAN command"),
        ("walk left opposite", "not a SCAN command"),
        ("walk around", "not a SCAN command"),
        ("walk twice twice", "not a SCAN command"),
        ("walk and run and look", "at most one"),
        ("walk and", "empty phrase"),
        ("left walk", "must start with"),
    ],
)
def test_interpret_rejects(command: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        interpret(command)


def test_generated_pairs() -> None:
    pairs = generate_scan()
    assert len(pairs) == 20_910 == len({p["command"] for p in pairs})
    assert [p["command"] for p in pairs] == sorted(p["command"] for p in pairs)
    assert {w for p in pairs for w in p["command"].split()} == set(COMMAND_WORDS)
    assert {a for p in pairs for a in p["target"]} == set(ACTIONS)
    assert max(len(p["command"].split()) for p in pairs) == 9
    assert max(len(p["target"]) for p in pairs) == 48


def test_generated_pairs_equal_official() -> None:
    official = _official("tasks.txt")
    assert len(official) == 20_910
    assert _as_set(generate_scan()) == _as_set(official)


# --- splits -------------------------------------------------------------------------------------


def test_length_split_equals_official() -> None:
    train, test = _official("tasks_train_length.txt"), _official("tasks_test_length.txt")
    split = make_split("length")
    assert (len(split.train) + len(split.valid), len(split.test)) == (16_990, 3_920)
    assert _as_set(split.train) | _as_set(split.valid) == _as_set(train)
    assert _as_set(split.test) == _as_set(test)
    assert max(len(p["target"]) for p in split.train + split.valid) == 22
    assert min(len(p["target"]) for p in split.test) == 24


@pytest.mark.parametrize("name", SPLITS)
def test_splits(name: str) -> None:
    split = make_split(name)
    cut = 22 if name == "length" else int(name.split("-")[1])
    train, valid, test = _as_set(split.train), _as_set(split.valid), _as_set(split.test)
    assert len(train) == len(split.train) and len(valid) == len(split.valid)
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert train | valid | test == _as_set(generate_scan())
    assert max(len(p["target"]) for p in split.train + split.valid) <= cut
    assert min(len(p["target"]) for p in split.test) > cut
    assert len(split.valid) == (len(split.train) + len(split.valid)) // 20
    assert make_split(name) == split  # deterministic


def test_cutoff_22_is_length_and_bad_names() -> None:
    assert CUTOFFS[0] == 22
    a, b = make_split("length"), make_split("cutoff-22")
    assert (a.train, a.valid, a.test) == (b.train, b.valid, b.test)
    for bad in ("simple", "cutoff-48", "cutoff-x"):
        with pytest.raises(ValueError, match="unknown SCAN split"):
            make_split(bad)


# --- file format --------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path: Path) -> None:
    split = make_split("cutoff-30")
    write_split(split, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test.txt",
        "train.txt",
        "valid.txt",
    ]
    for part in ("train", "valid", "test"):
        assert read_scan_file(tmp_path / "out" / f"{part}.txt") == getattr(split, part)


def test_write_reproduces_official_bytes(tmp_path: Path) -> None:
    official = _official("tasks_test_length.txt")
    write_scan_file(tmp_path / "t.txt", official)
    assert (tmp_path / "t.txt").read_bytes() == (DATA / "tasks_test_length.txt").read_bytes()


def test_write_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_scan_file(path, [{"command": "walk", "target": ["I_WALK"]}])
    with pytest.raises(KeyError):
        write_scan_file(path, [{"command": "run"}])  # no target: fails before replacing
    assert path.read_text() == "IN: walk OUT: I_WALK\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("walk OUT: I_WALK", "malformed line"),
        ("IN: walk I_WALK", "malformed line"),
        ("IN: OUT: I_WALK", "malformed line"),
        ("IN: jump fast OUT: I_JUMP", "unknown word 'fast'"),
        ("IN: walk OUT: I_RUN", "wrong actions"),
    ],
)
def test_read_errors_name_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"IN: walk OUT: I_WALK\n\nIN: run twice OUT: I_RUN I_RUN\n{line}\n")
    with pytest.raises(ValueError, match=f"bad.txt:4: .*{message}"):
        read_scan_file(path)


# --- task ---------------------------------------------------------------------------------------


def test_task_vocab_and_encode_decode() -> None:
    task = ScanTask()
    assert (task.name, task.input_vocab_sizes, task.output_vocab_size) == ("scan", (14,), 8)
    assert (task.eos_id, task.bos_id) == (0, 1)
    example = {"command": "jump twice after walk left"}
    assert task.target(example) == ["I_TURN_LEFT", "I_WALK", "I_JUMP", "I_JUMP"]
    assert task.output_length(example) == 4
    enc = task.encode(example)
    words = sorted(COMMAND_WORDS)
    assert [w for (w,) in enc.src] == [words.index(w) + 1 for w in example["command"].split()]
    assert enc.tgt[-1] == task.eos_id and task.eos_id not in enc.tgt[:-1]
    assert task.decode_output(enc.tgt) == task.target(example)
    assert task.decode_output([*enc.tgt, 5, 6]) == task.target(example)  # cut at first EOS
    assert task.decode_output([2, 1]) == ["I_JUMP", "<BOS>"]
    with pytest.raises(ValueError, match="out of range"):
        task.decode_output([8])


def test_task_validate() -> None:
    task = ScanTask()
    task.validate({"command": "walk", "target": ["I_WALK"]})
    for bad, message in [
        (["walk"], "must be a dict"),
        ({}, '"command" string'),
        ({"command": 3}, '"command" string'),
        ({"command": "walk quickly"}, "unknown word 'quickly'"),
        ({"command": "walk walk"}, "not a SCAN command"),
    ]:
        with pytest.raises(ValueError, match=message):
            task.validate(bad)
        with pytest.raises(ValueError, match=message):
            task.encode(bad)


def test_task_data() -> None:
    task = ScanTask("cutoff-26")
    split = make_split("cutoff-26")
    assert task.examples("train") == split.train and task.examples("test") == split.test
    assert task.examples("valid") == split.valid
    with pytest.raises(ValueError, match="unknown part"):
        task.examples("dev")
    assert task.default_train_lengths == (1, 26)
    assert task.default_test_lengths == (27, 28, 30, 32, 33, 36, 40, 48)
    rng = random.Random(0)
    train_commands = {p["command"] for p in split.train}
    batch = task.batch(rng, (1, 1), 16)
    assert batch.src.shape[0] == 16 and batch.tgt.shape[0] == 16
    ex = task.sample(rng, 5)
    assert ex["command"] in train_commands and task.output_length(ex) == 5
    assert task.output_length(task.sample(rng, 48)) == 48  # test length: from the test part
    with pytest.raises(ValueError, match="no output of 23 actions"):
        task.sample(rng, 23)
    one = [task.encode(task.sample(rng, n)) for n in (1, 48)]
    assert collate(one).tgt.shape == (2, 49)


def test_task_from_data_file(tmp_path: Path) -> None:
    train = [p for p in generate_scan() if "jump" not in p["command"]]
    write_scan_file(tmp_path / "train.txt", train)
    task = ScanTask(data_file=tmp_path / "train.txt")
    assert task.examples("train") == train and task.examples("valid") == []
    test = task.examples("test")
    assert len(train) + len(test) == 20_910 and all("jump" in p["command"] for p in test)
    counts = Counter(task.sample(random.Random(1), 1)["command"] for _ in range(50))
    assert set(counts) <= {"look", "run", "walk", "turn left", "turn right"}
    write_scan_file(tmp_path / "test.txt", test[:3])
    task = ScanTask(data_file=tmp_path / "train.txt", test_file=tmp_path / "test.txt")
    assert task.examples("test") == test[:3]
