"""The Chomsky-hierarchy tasks: hand-checked examples, generators against independent
references, ids, and bad input."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from panm.report import write_report
from panm.tasks import TASK_NAMES, get_task
from panm.tasks.chomsky import CHOMSKY_TASKS, TEST_LENGTHS

NAMES = tuple(CHOMSKY_TASKS)
LENGTHS = (1, 2, 3, 4, 5, 8, 13, 40, 41)


def bits(text: str) -> list[int]:
    """'0110' -> [0, 1, 1, 0]; spaces are ignored."""
    return [int(c) for c in text.replace(" ", "")]


# Worked by hand (the paper's examples where it gives one, in its integers).
KNOWN = [
    ("even_pairs", bits("001110"), [0]),  # one 01 and one 10
    ("even_pairs", bits("0101001"), [1]),  # 01, 10, 01, 10, 01: five pairs
    ("even_pairs", [1], [0]),
    ("parity_check", bits("1101"), [1]),
    ("parity_check", bits("1001"), [0]),
    ("parity_check", [0], [0]),
    # moves 1 -1 0 -1 -1 (tokens = move + 1) end at -2 = position 3
    ("cycle_navigation", [2, 0, 1, 0, 0], [3]),
    ("cycle_navigation", [2, 2, 2, 0], [2]),
    ("cycle_navigation", [2] * 7, [2]),
    # 1 + 2 * 3 = 7 = 2; 1 - 1 - 1 = -1 = 4; 0 * 1 + 4 * 3 - 2 = 10 = 0 (mod 5)
    ("modular_arithmetic", [1, 5, 2, 7, 3], [2]),
    ("modular_arithmetic", [1, 6, 1, 6, 1], [4]),
    ("modular_arithmetic", [0, 7, 1, 5, 4, 7, 3, 6, 2], [0]),
    ("modular_arithmetic", [4, 6, 2, 7, 3, 7, 4], [0]),  # 4 - 2 * 3 * 4 = -20 = 0
    ("modular_arithmetic", [2, 7, 4, 6, 3, 5, 1], [1]),  # 8 - 3 + 1 = 6 = 1
    ("modular_arithmetic", [3], [3]),
    # stack 0110, PUSH 1, POP, POP -> 011 read top to bottom = 110, terminator, 0s to 8 tokens
    ("stack_manipulation", [0, 1, 1, 0, 4, 2, 2], [1, 1, 0, 2, 0, 0, 0, 0]),
    # stack 110, POP x3 -> empty
    ("stack_manipulation", [1, 1, 0, 2, 2, 2], [2, 0, 0, 0, 0, 0, 0]),
    # POP on an empty stack is ignored; PUSH 0 then
    ("stack_manipulation", [1, 2, 2, 3], [0, 2, 0, 0, 0]),
    ("stack_manipulation", [1], [1, 2]),
    ("reverse_string", bits("0011"), bits("1100")),
    ("duplicate_string", bits("101"), bits("101101")),
    ("odds_first", bits("00110101"), bits("0100 0111")),
    ("odds_first", bits("110"), bits("10 1")),
    ("odds_first", [1], [1]),
    ("missing_duplicate_string", [0, 1, 1, 0, 0, 2, 1, 0], [1]),  # w = 0110
    ("missing_duplicate_string", [1, 0, 1, 1, 2, 1, 3], [0]),  # w = 101, padded
    ("missing_duplicate_string", [2, 1, 0, 1], [0]),
    # 001 + 01101 = 4 + 22 = 26 = 01011 (little-endian), terminator, 0s to 10 tokens
    ("binary_addition", [0, 0, 1, 2, 0, 1, 1, 0, 1], [0, 1, 0, 1, 1, 2, 0, 0, 0, 0]),
    # 1001 + 000001 = 9 + 32 = 41 = 100101
    ("binary_addition", bits("1001 2 000001"), bits("100101 2 00000")),
    ("binary_addition", [0, 2, 0], [2, 0, 0, 0]),  # 0 + 0: no digits, terminator first
    ("bucket_sort", [1, 0, 2, 0, 4, 1, 1, 2], [0, 0, 1, 1, 1, 2, 2, 4]),
    ("bucket_sort", [4, 4, 3], [3, 4, 4]),
]


@pytest.mark.parametrize(("name", "seq", "target"), KNOWN)
def test_known_targets(name: str, seq: list[int], target: list[int]) -> None:
    task = get_task(name)
    assert task.target({"seq": seq}) == target
    assert task.encode({"seq": seq}).tgt == target


def test_known_examples_cover_every_task() -> None:
    assert {name for name, _, _ in KNOWN} == set(NAMES)


# --- independent references: written from the paper's definitions, not the package's code ----


def little_endian_value(digits: list[int]) -> int:
    return int("".join(map(str, reversed(digits))) or "0", 2)


def reference_target(name: str, seq: list[int]) -> list[int]:
    n = len(seq)
    if name == "even_pairs":
        return [sum(1 for i in range(n - 1) if seq[i] != seq[i + 1]) % 2]
    if name == "parity_check":
        return [seq.count(1) % 2]
    if name == "cycle_navigation":
        position = 0
        for token in seq:
            position = (position + {0: -1, 1: 0, 2: 1}[token]) % 5
        return [position]
    if name == "modular_arithmetic":
        text = "".join(str(t) if t < 5 else "+-*"[t - 5] for t in seq)
        return [eval(text) % 5]  # Python's precedence is the paper's
    if name == "stack_manipulation":
        stack: list[int] = []
        for token in seq:
            if token in (0, 1):
                stack.append(token)
            elif token == 2:
                stack = stack[:-1]
            else:
                stack.append(token - 3)
        answer = [*reversed(stack), 2]
        return answer + [0] * (n + 1 - len(answer))
    if name == "reverse_string":
        return [seq[n - 1 - i] for i in range(n)]
    if name == "duplicate_string":
        return seq + seq
    if name == "odds_first":  # 1-based odd positions = 0-based even ones
        return [seq[i] for i in range(0, n, 2)] + [seq[i] for i in range(1, n, 2)]
    if name == "missing_duplicate_string":
        half = n // 2
        i = seq.index(2)
        return [seq[(i + half) % (2 * half)]]
    if name == "binary_addition":
        plus = seq.index(2)
        total = little_endian_value(seq[:plus]) + little_endian_value(seq[plus + 1 :])
        answer = [int(c) for c in reversed(bin(total)[2:])] if total else []
        answer += [2]
        return answer + [0] * (n + 1 - len(answer))
    if name == "bucket_sort":
        return [s for s in range(5) for _ in range(seq.count(s))]
    raise AssertionError(name)


def assert_well_formed(name: str, seq: list[int], length: int) -> None:
    """A sample has the paper's form for its length (independently of `validate`)."""
    if name == "modular_arithmetic":
        assert len(seq) == (length if length % 2 else length - 1)
        assert all(t in range(5) for t in seq[::2]) and all(t in (5, 6, 7) for t in seq[1::2])
        return
    assert len(seq) == length
    if name == "stack_manipulation":
        stack = [t for t in seq if t < 2]
        assert seq[: len(stack)] == stack and 1 <= len(stack) and all(t < 5 for t in seq)
        assert len(stack) < length or length == 1
    elif name == "missing_duplicate_string":
        half = length // 2
        body = seq[: 2 * half]
        assert seq[2 * half :] == [3] * (length % 2) and body.count(2) == 1
        i = body.index(2)
        restored = list(body)
        restored[i] = body[(i + half) % (2 * half)]
        assert restored[:half] == restored[half:] and set(restored) <= {0, 1}
    elif name == "binary_addition":
        plus = seq.index(2)
        assert seq.count(2) == 1 and 1 <= plus <= length - 2
        assert little_endian_value(seq[:plus]) >= 1 and little_endian_value(seq[plus + 1 :]) >= 1
    else:
        alphabet = {"cycle_navigation": 3, "bucket_sort": 5}.get(name, 2)
        assert all(0 <= t < alphabet for t in seq)


@pytest.mark.parametrize("name", NAMES)
def test_samples_match_reference(name: str) -> None:
    task = get_task(name)
    rng = random.Random(2023)
    for length in LENGTHS:
        if length < task.min_length():
            continue
        for _ in range(30):
            example = task.sample(rng, length)
            assert set(example) == {"seq"}
            assert_well_formed(name, example["seq"], length)
            task.validate(example)
            assert task.target(example) == reference_target(name, example["seq"])


@pytest.mark.parametrize("name", NAMES)
def test_samples_vary_and_targets_are_not_constant(name: str) -> None:
    task = get_task(name)
    rng = random.Random(5)
    length = max(task.min_length(), 9)
    examples = [task.sample(rng, length) for _ in range(200)]
    assert len({tuple(e["seq"]) for e in examples}) > 100
    assert len({tuple(task.target(e)) for e in examples}) > 1


def test_generators_draw_as_documented() -> None:
    rng = random.Random(0)
    addition = get_task("binary_addition")
    plus = Counter(addition.sample(rng, 6)["seq"].index(2) for _ in range(2000))
    assert sorted(plus) == [1, 2, 3, 4]  # the first number has 1..length-2 digits, uniformly
    assert min(plus.values()) > 400
    stack = get_task("stack_manipulation")
    sizes = Counter(sum(t < 2 for t in stack.sample(rng, 5)["seq"]) for _ in range(2000))
    assert sorted(sizes) == [1, 2, 3, 4] and min(sizes.values()) > 400
    missing = get_task("missing_duplicate_string")
    holes = Counter(missing.sample(rng, 7)["seq"].index(2) for _ in range(3000))
    assert sorted(holes) == [0, 1, 2, 3, 4, 5] and min(holes.values()) > 400


def test_missing_duplicate_answer_is_the_parity_of_the_visible_ones() -> None:
    # w w holds an even number of 1s, so the hidden token is the parity of the 1s left: a model
    # can answer without reading the copy half a length away (docs/chomsky.md).
    task = get_task("missing_duplicate_string")
    rng = random.Random(3)
    for length in (2, 3, 8, 41, 500):
        for _ in range(50):
            example = task.sample(rng, length)
            assert task.target(example) == [example["seq"].count(1) % 2]


@pytest.mark.parametrize("name", NAMES)
def test_protocol_lengths_and_vocabularies(name: str) -> None:
    task = get_task(name)
    assert task.default_train_lengths == (1, 40)
    assert task.default_test_lengths == TEST_LENGTHS
    assert min(TEST_LENGTHS) == 41 and max(TEST_LENGTHS) == 500
    assert task.eos_id is None
    example = task.sample(random.Random(1), 12)
    encoded = task.encode(example)
    end = [(1,)] if name == "binary_addition" else []  # SEP after the second number
    assert encoded.src == [(4 + t,) for t in example["seq"]] + end
    assert all(0 <= t < task.output_vocab_size for t in encoded.tgt)
    copy_map = task.copy_map()
    assert len(copy_map) == task.input_vocab_sizes[0]
    assert any(i >= 0 for i in copy_map)  # the pointer baseline can output something


def test_vocabulary_sizes_are_the_papers() -> None:
    sizes = {
        name: (get_task(name).input_vocab_sizes[0] - 4, get_task(name).output_vocab_size)
        for name in NAMES
    }
    assert sizes == {
        "even_pairs": (2, 2),
        "modular_arithmetic": (8, 5),
        "parity_check": (2, 2),
        "cycle_navigation": (3, 5),
        "stack_manipulation": (5, 3),
        "reverse_string": (2, 2),
        "duplicate_string": (2, 2),
        "missing_duplicate_string": (4, 2),
        "odds_first": (2, 2),
        "binary_addition": (3, 3),
        "bucket_sort": (5, 5),
    }
    assert get_task("bucket_sort", num_symbols=3).output_vocab_size == 3
    assert get_task("reverse_string", num_symbols=4).target({"seq": [3, 0, 2]}) == [2, 0, 3]


def test_registry() -> None:
    assert set(NAMES) <= set(TASK_NAMES)
    assert repr(get_task("parity_check")) == "ParityCheckTask()"
    with pytest.raises(ValueError, match="unknown parity_check option"):
        get_task("parity_check", num_symbols=3)


@pytest.mark.parametrize(
    ("name", "seq", "fragment"),
    [
        ("parity_check", [0, 2], r"'seq'\[1\] = 2 is outside"),
        ("reverse_string", [], "at least 1"),
        ("modular_arithmetic", [1, 5], "odd length"),
        ("modular_arithmetic", [1, 1, 1], r"'seq'\[1\] = 1 must be an operator"),
        ("modular_arithmetic", [5, 5, 1], r"'seq'\[0\] = 5 must be a number"),
        ("stack_manipulation", [1, 2, 0], r"'seq'\[2\] = 0 is a stack token after"),
        ("missing_duplicate_string", [1], "at least 2"),
        ("missing_duplicate_string", [0, 1, 0, 1], "exactly once, got 0"),
        ("missing_duplicate_string", [2, 1, 2, 1], "exactly once, got 2"),
        ("missing_duplicate_string", [2, 1, 0, 0], r"not a duplicated string: 'seq'\[1\] = 1"),
        ("missing_duplicate_string", [2, 1, 0, 1, 0], "padding token 3"),
        ("missing_duplicate_string", [2, 3, 0, 3], "padding token 3"),
        ("binary_addition", [1, 1, 1], r"one '\+' \(2\), got 0"),
        ("binary_addition", [1, 2, 1, 2], r"one '\+' \(2\), got 2"),
        ("binary_addition", [2, 1, 1], "at least one digit"),
        ("binary_addition", [1, 1, 2], "at least one digit"),
        ("bucket_sort", [0, 5], r"'seq'\[1\] = 5 is outside"),
    ],
)
def test_bad_examples(name: str, seq: list[int], fragment: str) -> None:
    task = get_task(name)
    with pytest.raises(ValueError, match=fragment):
        task.target({"seq": seq})
    with pytest.raises(ValueError, match=fragment):
        task.encode({"seq": seq})


@pytest.mark.parametrize(
    ("name", "length"), [("binary_addition", 2), ("missing_duplicate_string", 1), ("odds_first", 0)]
)
def test_sample_rejects_short_lengths(name: str, length: int) -> None:
    with pytest.raises(ValueError, match="needs length >="):
        get_task(name).sample(random.Random(0), length)


def test_training_batch_skips_lengths_a_task_cannot_make() -> None:
    batch = get_task("binary_addition").batch(random.Random(0), (1, 40), 64)
    assert batch.src_mask.sum(dim=1).min() >= 3 + 1  # the digits, "+" and the end (SEP)
    assert (batch.tgt_mask.sum(dim=1) == batch.src_mask.sum(dim=1)).all()  # length + 1 each


def fake_result(task: str, row: str, seed: int, accuracies: dict[int, tuple[float, float]]) -> dict:
    """A run's result.json with (token accuracy, exact match) per test length."""
    return {
        "task": task,
        "row": row,
        "model": row,
        "seed": seed,
        "params": 10,
        "train_seconds": 1.0,
        "steps": 5,
        "best_step": 5,
        "valid_sequence_accuracy": 1.0,
        "valid_token_accuracy": 1.0,
        "train_lengths": [1, 40],
        "test": [
            {"length": n, "token_accuracy": tok, "sequence_accuracy": seq, "count": 4}
            for n, (tok, seq) in accuracies.items()
        ],
    }


def test_report_averages_over_test_lengths_for_chomsky_tasks_only(tmp_path) -> None:
    runs = [
        fake_result("reverse_string", "lstm", 0, {41: (0.9, 0.5), 500: (0.5, 0.0)}),
        fake_result("reverse_string", "lstm", 1, {41: (1.0, 1.0), 500: (0.6, 0.0)}),
        fake_result("copy", "lstm", 0, {11: (1.0, 1.0), 22: (0.5, 0.0)}),
    ]
    for result in runs:
        run_dir = tmp_path / "runs" / result["task"] / result["row"] / f"seed-{result['seed']}"
        run_dir.mkdir(parents=True)
        (run_dir / "result.json").write_text(json.dumps(result))
    markdown = write_report(tmp_path)
    assert "## Averaged over the test lengths" in markdown
    # seed 0: token (0.9 + 0.5) / 2 = 70%, exact 25%; seed 1: 80%, 50%; std of (70, 80) = 7.1
    assert "| reverse_string | lstm | 2 | 75.0 ± 7.1 (80.0) | 37.5 ± 17.7 (50.0) |" in markdown
    assert "| copy | lstm |" not in markdown
    plain = tmp_path / "plain"
    (plain / "runs/copy/lstm/seed-0").mkdir(parents=True)
    (plain / "runs/copy/lstm/seed-0/result.json").write_text(json.dumps(runs[2]))
    assert "Averaged over the test lengths" not in write_report(plain)
