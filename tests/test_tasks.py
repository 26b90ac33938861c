"""The algorithmic tasks against independent references: targets, ids, batches and errors."""

from __future__ import annotations

import random

import pytest
import torch

from panm.tasks import TASK_NAMES, Batch, EncodedExample, Task, collate, get_task
from panm.tasks.chomsky import CHOMSKY_TASKS

ALGORITHMIC = ("copy", "reverse", "mix", "dynamic_recall", "priority_sort", "id_sort")
LENGTHS = (1, 2, 3, 5, 10, 11, 22, 44, 88)


# --- reference definitions, written from the spec without the package's code ------------------


def reference_target(name: str, ex: dict) -> list[int]:
    seq = ex["seq"]
    n = len(seq)
    if name == "copy":
        return list(seq)
    if name == "reverse":
        return [seq[n - 1 - i] for i in range(n)]
    if name == "mix":
        return reference_target(ex["op"], {"seq": seq})
    if name == "dynamic_recall":
        for i in range(n - 1):
            if seq[i] == ex["query"]:
                return [seq[i + 1]]
        raise AssertionError("query does not occur before the last position")
    if name == "priority_sort":
        order = sorted(range(n), key=lambda i: (ex["priority"][i], i))
        return [seq[i] for i in order]
    if name == "id_sort":
        by_id = dict(zip(ex["ids"], seq, strict=True))
        return [by_id[k] for k in sorted(by_id)]
    raise AssertionError(name)


def assert_well_formed(name: str, ex: dict, length: int, task: Task) -> None:
    """A sample obeys its task's definition (independently of `validate`)."""
    ns = task.num_symbols  # type: ignore[attr-defined]
    seq = ex["seq"]
    assert len(seq) == length and all(type(s) is int and 0 <= s < ns for s in seq)
    extra = {
        "mix": {"op"},
        "dynamic_recall": {"query"},
        "priority_sort": {"priority"},
        "id_sort": {"ids"},
    }.get(name, set())
    assert set(ex) == {"seq"} | extra
    if name == "mix":
        assert ex["op"] in ("copy", "reverse")
    if name == "dynamic_recall":
        assert ex["query"] in seq[:-1]
    if name == "priority_sort":
        assert len(ex["priority"]) == length
        assert all(0 <= p < task.num_priorities for p in ex["priority"])  # type: ignore[attr-defined]
    if name == "id_sort":
        assert len(set(ex["ids"])) == length
        assert all(0 <= k < task.num_ids for k in ex["ids"])  # type: ignore[attr-defined]


def min_len(name: str) -> int:
    return 2 if name == "dynamic_recall" else 1


# --- generators and targets ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_samples_match_reference(name: str) -> None:
    rng = random.Random(1234)
    for num_symbols in (1, 3, 10):
        task = get_task(name, num_symbols=num_symbols)
        for length in LENGTHS:
            if length < min_len(name):
                continue
            for _ in range(40):
                ex = task.sample(rng, length)
                assert_well_formed(name, ex, length, task)
                task.validate(ex)
                assert task.target(ex) == reference_target(name, ex)
                assert task.encode(ex).tgt == reference_target(name, ex)


@pytest.mark.parametrize(
    ("name", "example", "target"),
    [
        ("copy", {"seq": [3, 1, 4, 1]}, [3, 1, 4, 1]),
        ("reverse", {"seq": [3, 1, 4, 1]}, [1, 4, 1, 3]),
        ("mix", {"seq": [3, 1, 4], "op": "copy"}, [3, 1, 4]),
        ("mix", {"seq": [3, 1, 4], "op": "reverse"}, [4, 1, 3]),
        ("dynamic_recall", {"seq": [5, 2, 5, 7], "query": 5}, [2]),
        ("dynamic_recall", {"seq": [1, 2, 3, 2], "query": 2}, [3]),
        ("dynamic_recall", {"seq": [8, 8], "query": 8}, [8]),
        ("priority_sort", {"seq": [1, 2, 3, 4], "priority": [2, 0, 2, 0]}, [2, 4, 1, 3]),
        ("id_sort", {"seq": [1, 2, 3], "ids": [200, 7, 50]}, [2, 3, 1]),
    ],
)
def test_known_targets(name: str, example: dict, target: list[int]) -> None:
    assert get_task(name).target(example) == target


def test_dynamic_recall_query_varies_and_is_uniform_over_first_occurrences() -> None:
    task = get_task("dynamic_recall")
    rng = random.Random(7)
    first_positions = []
    for _ in range(2000):
        ex = task.sample(rng, 5)
        first_positions.append(ex["seq"].index(ex["query"]))
    counts = [first_positions.count(i) for i in range(4)]
    assert all(c > 0 for c in counts)
    # position 0 is always a first occurrence, so it is picked roughly 1/(distinct symbols) often
    assert 0.2 < counts[0] / 2000 < 0.45


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_determinism(name: str) -> None:
    task = get_task(name)

    def draw(seed: int) -> list[dict]:
        rng = random.Random(seed)
        return [task.sample(rng, length) for length in (2, 10, 20, 44)]

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)
    assert get_task(name).batch(random.Random(3), (2, 12), 8).src.tolist() == (
        task.batch(random.Random(3), (2, 12), 8).src.tolist()
    )


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_sample_rejects_short_lengths(name: str) -> None:
    task = get_task(name)
    assert task.min_length() == min_len(name)
    with pytest.raises(ValueError, match="length"):
        task.sample(random.Random(0), task.min_length() - 1)


def test_id_sort_length_limit() -> None:
    task = get_task("id_sort", num_ids=5)
    assert sorted(task.sample(random.Random(0), 5)["ids"]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="num_ids"):
        task.sample(random.Random(0), 6)


def test_close_ids_change_training_batches_only() -> None:
    plain, close = get_task("id_sort"), get_task("id_sort", close_ids=0.5)
    assert close.sample(random.Random(3), 10) == plain.sample(random.Random(3), 10)
    assert plain.training_sample(random.Random(3), 10) == plain.sample(random.Random(3), 10)
    spans = []
    for seed in range(400):
        example = close.training_sample(random.Random(seed), 8)
        ids = example["ids"]
        assert len(set(ids)) == 8 and all(0 <= i < 256 for i in ids)
        assert close.target(example) == plain.target(example)
        spans.append(max(ids) - min(ids))
    windowed = sum(span < 16 for span in spans)  # a window of 2 x 8 ids spans at most 15
    assert 150 < windowed < 250  # about half; uniform ids span < 16 with probability ~1e-8
    all_close = get_task("id_sort", num_ids=12, close_ids=1.0)
    assert sorted(all_close.training_sample(random.Random(0), 12)["ids"]) == list(range(12))
    batch = close.batch(random.Random(0), (8, 8), 64)  # training batches draw training samples
    ranges = batch.src[:, :, 1].max(dim=1).values - batch.src[:, :, 1].min(dim=1).values
    assert 10 < int((ranges < 16).sum()) < 54


def test_unknown_task_option_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown copy option\(s\) close_ids; known: num_symbols"):
        get_task("copy", close_ids=0.5)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("copy", {"num_symbols": 0}),
        ("priority_sort", {"num_priorities": 0}),
        ("id_sort", {"num_ids": 0}),
        ("id_sort", {"close_ids": 1.5}),
        ("id_sort", {"close_ids": True}),
    ],
)
def test_bad_constructor_arguments(name: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        get_task(name, **kwargs)


# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "example", "src"),
    [
        ("copy", {"seq": [0, 3, 9]}, [(4,), (7,), (13,)]),
        ("reverse", {"seq": [0, 3, 9]}, [(4,), (7,), (13,)]),
        ("mix", {"seq": [0, 9], "op": "copy"}, [(2,), (4,), (13,)]),
        ("mix", {"seq": [0, 9], "op": "reverse"}, [(3,), (4,), (13,)]),
        ("dynamic_recall", {"seq": [5, 6, 5], "query": 5}, [(9,), (10,), (9,), (1,), (9,)]),
        ("priority_sort", {"seq": [0, 9], "priority": [9, 0]}, [(4, 10), (13, 1)]),
        ("id_sort", {"seq": [0, 9], "ids": [255, 0]}, [(4, 256), (13, 1)]),
    ],
)
def test_encode(name: str, example: dict, src: list[tuple[int, ...]]) -> None:
    task = get_task(name)
    enc = task.encode(example)
    assert isinstance(enc, EncodedExample)
    assert enc.src == src
    assert enc.tgt == reference_target(name, example)
    assert all(len(slot) == len(task.input_vocab_sizes) for slot in enc.src)
    for slot in enc.src:
        assert all(0 < v < size for v, size in zip(slot, task.input_vocab_sizes, strict=True))
    assert task.decode_output(enc.tgt) == task.target(example)


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_vocabularies_and_copy_map(name: str) -> None:
    task = get_task(name, num_symbols=6)
    assert task.name == name
    assert task.input_vocab_sizes[0] == 4 + 6
    assert task.output_vocab_size == 6
    assert task.eos_id is None
    expected_fields = {"priority_sort": (10, 11), "id_sort": (10, 257)}.get(name, (10,))
    assert task.input_vocab_sizes == expected_fields
    assert task.copy_map() == (-1, -1, -1, -1, 0, 1, 2, 3, 4, 5)
    # a pointer to a symbol slot, mapped through copy_map, yields that symbol's output id
    ex = task.sample(random.Random(0), 6)
    enc = task.encode(ex)
    symbols = [task.copy_map()[slot[0]] for slot in enc.src if task.copy_map()[slot[0]] >= 0]
    assert symbols[: len(ex["seq"])] == ex["seq"]
    assert task.decode_output(torch.tensor([5, 0, 2]).tolist()) == [5, 0, 2]


def test_sort_vocab_sizes_follow_arguments() -> None:
    assert get_task("priority_sort", num_priorities=3).input_vocab_sizes == (14, 4)
    assert get_task("id_sort", num_symbols=2, num_ids=20).input_vocab_sizes == (6, 21)


# --- batches ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_batch_shapes_and_masks(name: str) -> None:
    task = get_task(name)
    rng = random.Random(5)
    batch = task.batch(rng, (1, 12), 16)
    assert isinstance(batch, Batch) and len(batch) == 16
    num_fields = len(task.input_vocab_sizes)
    assert batch.src.dtype == torch.long and batch.tgt.dtype == torch.long
    assert batch.src.shape[0] == 16 and batch.src.shape[2] == num_fields
    assert batch.src_mask.shape == batch.src.shape[:2] and batch.src_mask.dtype == torch.bool
    assert batch.tgt_mask.shape == batch.tgt.shape and batch.tgt_mask.dtype == torch.bool
    # masks are prefixes; padding is 0 and real slots are non-zero in every field
    for mask in (batch.src_mask, batch.tgt_mask):
        lengths = mask.sum(1)
        assert torch.equal(mask, torch.arange(mask.shape[1]) < lengths[:, None])
    assert (batch.src[~batch.src_mask] == 0).all() and (batch.src[batch.src_mask] > 0).all()
    assert (batch.tgt[~batch.tgt_mask] == 0).all()
    assert (batch.tgt < task.output_vocab_size).all()
    for f, size in enumerate(task.input_vocab_sizes):
        assert (batch.src[..., f] < size).all()
    # real lengths stay within the requested range (after the min_length clamp)
    seq_lengths = batch.src_mask.sum(1) - {"mix": 1, "dynamic_recall": 2}.get(name, 0)
    assert seq_lengths.min() >= task.min_length() and seq_lengths.max() <= 12
    expected_tgt = 1 if name == "dynamic_recall" else seq_lengths
    assert torch.equal(batch.tgt_mask.sum(1), torch.as_tensor(expected_tgt).expand(16))


@pytest.mark.parametrize(
    ("name", "src_len", "tgt_len"),
    [("copy", 5, 5), ("mix", 6, 5), ("dynamic_recall", 7, 1), ("id_sort", 5, 5)],
)
def test_fixed_length_batch(name: str, src_len: int, tgt_len: int) -> None:
    task = get_task(name)
    batch = task.batch(random.Random(0), (5, 5), 4)
    assert batch.src.shape == (4, src_len, len(task.input_vocab_sizes))
    assert batch.tgt.shape == (4, tgt_len)
    assert batch.src_mask.all() and batch.tgt_mask.all()


def test_batch_clamps_to_min_length_and_collate_matches() -> None:
    task = get_task("dynamic_recall")
    batch = task.batch(random.Random(0), (1, 2), 3)
    assert batch.src.shape == (3, 4, 1)  # length 2 + SEP + query
    examples = [task.sample(random.Random(i), 3) for i in range(2)]
    direct = collate([task.encode(e) for e in examples])
    first = examples[0]
    expected = [*(4 + s for s in first["seq"]), 1, 4 + first["query"]]
    assert direct.src[0, :, 0].tolist() == expected
    assert direct.tgt[:, 0].tolist() == [task.target(e)[0] for e in examples]


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "example", "fragment"),
    [
        ("copy", [1, 2], "JSON object"),
        ("copy", {}, "missing field(s): seq"),
        ("copy", {"seq": [1], "foo": 1, "bar": 2}, "unknown field(s): 'foo', 'bar'"),
        ("copy", {"seq": "123"}, "'seq' must be a list of ints"),
        ("copy", {"seq": [1, 2.0]}, "'seq'[1] must be an int, got float"),
        ("copy", {"seq": [1, True]}, "'seq'[1] must be an int, got bool"),
        ("copy", {"seq": [1, 10]}, "'seq'[1] = 10 is outside the allowed range 0..9"),
        ("reverse", {"seq": [-1]}, "'seq'[0] = -1 is outside the allowed range 0..9"),
        ("copy", {"seq": []}, "'seq' has 0 item(s); copy needs at least 1"),
        ("mix", {"seq": [1]}, "missing field(s): op"),
        ("mix", {"seq": [1], "op": "sort"}, "'op' must be 'copy' or 'reverse', got 'sort'"),
        ("mix", {"seq": [1], "op": 0}, "'op' must be 'copy' or 'reverse'"),
        ("dynamic_recall", {"seq": [1]}, "missing field(s): query"),
        ("dynamic_recall", {"seq": [1], "query": 1}, "dynamic_recall needs at least 2"),
        ("dynamic_recall", {"seq": [1, 2], "query": 2}, "'query' 2 does not occur"),
        ("dynamic_recall", {"seq": [1, 2], "query": 3}, "'query' 3 does not occur"),
        ("dynamic_recall", {"seq": [1, 2], "query": "1"}, "'query' must be an int, got str"),
        ("dynamic_recall", {"seq": [1, 2], "query": 10}, "'query' = 10 is outside"),
        ("priority_sort", {"seq": [1, 2]}, "missing field(s): priority"),
        ("priority_sort", {"seq": [1, 2], "priority": [0]}, "'priority' has 1 items but 'seq'"),
        ("priority_sort", {"seq": [1], "priority": [10]}, "'priority'[0] = 10 is outside"),
        ("priority_sort", {"seq": [1], "priority": 3}, "'priority' must be a list of ints"),
        ("id_sort", {"seq": [1, 2], "ids": [4, 4]}, "'ids' must be distinct; repeated: [4]"),
        ("id_sort", {"seq": [1, 2], "ids": [0, 256]}, "'ids'[1] = 256 is outside the allowed"),
        ("id_sort", {"seq": [1, 2], "ids": [0, 1, 2]}, "'ids' has 3 items but 'seq' has 2"),
        ("id_sort", {"seq": [1], "priority": [0]}, "missing field(s): ids"),
    ],
)
def test_validation_errors(name: str, example: object, fragment: str) -> None:
    task = get_task(name)
    for method in (task.validate, task.encode, task.target):
        with pytest.raises(ValueError) as info:
            method(example)  # type: ignore[arg-type]
        assert fragment in str(info.value)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_validation_ignores_target_and_output(name: str) -> None:
    task = get_task(name)
    ex = task.sample(random.Random(0), 4)
    ex_with_extras = {**ex, "target": task.target(ex), "output": [0]}
    task.validate(ex_with_extras)
    assert task.encode(ex_with_extras) == task.encode(ex)


# --- registry -----------------------------------------------------------------------------------


def test_registry() -> None:
    assert TASK_NAMES == (*ALGORITHMIC, *CHOMSKY_TASKS, "scan")
    for name in ALGORITHMIC:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert type(task).__doc__
    assert get_task("copy", num_symbols=5).num_symbols == 5  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"unknown task 'sort'; choose from: copy, .*scan"):
        get_task("sort")


def test_registry_scan() -> None:
    pytest.importorskip("panm.tasks.scan")
    assert get_task("scan").name == "scan"
