"""The six algorithmic tasks: copy, reverse, mix, dynamic recall, priority sort and id sort.

Every task draws tokens from the symbols 0..num_symbols-1 and works at any length. The main
sequence is the JSON field "seq"; tasks add "op", "query", "priority" or "ids" (see each class).
A "target" or "output" key (written by `panm data` / `panm predict`) is accepted and ignored.

Ids, shared by all six tasks so that their vocabularies line up:

- input field 0: 0 = PAD, 1 = SEP, 2 = OP_COPY, 3 = OP_REVERSE, symbol s -> 4 + s;
- input field 1 (sorting tasks only): priority or id k -> 1 + k (0 stays padding);
- output: symbol s -> s. Output lengths are known from the input, so `eos_id` is None.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Sequence
from typing import TypeGuard

from panm.tasks.base import EncodedExample, Task

PAD, SEP, OP_COPY, OP_REVERSE = 0, 1, 2, 3
NUM_SPECIALS = 4
"""Field-0 ids below this are special; symbol s has id NUM_SPECIALS + s."""

_IGNORED_KEYS = ("target", "output")


def is_int(value: object) -> TypeGuard[int]:
    """True for ints proper (bool is not accepted as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, what: str, high: int) -> int:
    """Returns `value` if it is an int in 0..high-1, else raises ValueError naming `what`."""
    if not is_int(value):
        raise ValueError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if not 0 <= value < high:
        raise ValueError(f"{what} = {value} is outside the allowed range 0..{high - 1}")
    return value


def check_int_list(example: dict, key: str, high: int) -> list[int]:
    """Returns `example[key]` if it is a list of ints in 0..high-1, else raises ValueError."""
    value = example[key]
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be a list of ints, got {type(value).__name__}")
    for i, item in enumerate(value):
        check_int(item, f"'{key}'[{i}]", high)
    return value


class AlgorithmicTask(Task):
    """Shared machinery: the "seq" field of symbols, key checks, ids, sampling and the copy map.

    Subclasses set `name` and `keys` (the required JSON fields, "seq" first) and implement
    `_target`; they extend `_validate_rest`, `_sample_rest` and `_slots` for their extra fields.
    """

    keys: tuple[str, ...] = ("seq",)

    def __init__(self, num_symbols: int = 10) -> None:
        if not is_int(num_symbols) or num_symbols < 1:
            raise ValueError(f"num_symbols must be a positive int, got {num_symbols!r}")
        self.num_symbols = num_symbols
        self.input_vocab_sizes: tuple[int, ...] = (NUM_SPECIALS + num_symbols,)
        self.output_vocab_size = num_symbols

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_symbols={self.num_symbols})"

    # --- examples ---------------------------------------------------------------------------

    def sample(self, rng: random.Random, length: int) -> dict:
        """A random example: "seq" (`_sample_seq`), then the task's extra fields."""
        if not is_int(length) or length < self.min_length():
            raise ValueError(f"{self.name} needs length >= {self.min_length()}, got {length!r}")
        seq = self._sample_seq(rng, length)
        return {"seq": seq, **self._sample_rest(rng, seq)}

    def _sample_seq(self, rng: random.Random, length: int) -> list[int]:
        """The "seq" of a random example: `length` uniform symbols."""
        return [rng.randrange(self.num_symbols) for _ in range(length)]

    def _sample_rest(self, rng: random.Random, seq: list[int]) -> dict:
        """The fields besides "seq" of a random example."""
        return {}

    def validate(self, example: dict) -> None:
        if not isinstance(example, dict):
            raise ValueError(f"an example must be a JSON object, got {type(example).__name__}")
        missing = [key for key in self.keys if key not in example]
        if missing:
            raise ValueError(f"{self.name} example is missing field(s): {', '.join(missing)}")
        unknown = [k for k in example if k not in self.keys and k not in _IGNORED_KEYS]
        if unknown:
            raise ValueError(
                f"{self.name} example has unknown field(s): {', '.join(map(repr, unknown))}; "
                f"expected: {', '.join(self.keys)}"
            )
        seq = check_int_list(example, "seq", self.num_symbols)
        if len(seq) < self.min_length():
            raise ValueError(
                f"'seq' has {len(seq)} item(s); {self.name} needs at least {self.min_length()}"
            )
        self._validate_rest(example, seq)

    def _validate_rest(self, example: dict, seq: list[int]) -> None:
        """Checks the fields besides "seq" (which is already valid)."""

    def target(self, example: dict) -> list:
        self.validate(example)
        return self._target(example)

    @abstractmethod
    def _target(self, example: dict) -> list[int]:
        """The target symbols of a valid example."""

    # --- ids --------------------------------------------------------------------------------

    def encode(self, example: dict) -> EncodedExample:
        self.validate(example)
        return EncodedExample(src=self._slots(example), tgt=self._target(example))

    def _slots(self, example: dict) -> list[tuple[int, ...]]:
        """Input slots of a valid example; by default one single-field slot per symbol."""
        return [(NUM_SPECIALS + s,) for s in example["seq"]]

    def decode_output(self, ids: Sequence[int]) -> list:
        return [int(i) for i in ids]

    def copy_map(self) -> tuple[int, ...]:
        return (-1,) * NUM_SPECIALS + tuple(range(self.num_symbols))


class CopyTask(AlgorithmicTask):
    """Copy: {"seq": s} -> s. Input slots: the symbols."""

    name = "copy"

    def _target(self, example: dict) -> list[int]:
        return list(example["seq"])


class ReverseTask(AlgorithmicTask):
    """Reverse: {"seq": s} -> s reversed. Input slots: the symbols."""

    name = "reverse"

    def _target(self, example: dict) -> list[int]:
        return example["seq"][::-1]


class MixTask(AlgorithmicTask):
    """Mix: {"seq": s, "op": "copy" | "reverse"} -> s, or s reversed.

    Input slots: OP_COPY or OP_REVERSE, then the symbols. The op is drawn uniformly.
    """

    name = "mix"
    keys = ("seq", "op")
    ops = ("copy", "reverse")

    def _sample_rest(self, rng: random.Random, seq: list[int]) -> dict:
        return {"op": rng.choice(self.ops)}

    def _validate_rest(self, example: dict, seq: list[int]) -> None:
        if example["op"] not in self.ops:
            raise ValueError(f"'op' must be 'copy' or 'reverse', got {example['op']!r}")

    def _target(self, example: dict) -> list[int]:
        seq = example["seq"]
        return list(seq) if example["op"] == "copy" else seq[::-1]

    def _slots(self, example: dict) -> list[tuple[int, ...]]:
        op_id = OP_COPY if example["op"] == "copy" else OP_REVERSE
        return [(op_id,), *super()._slots(example)]


class DynamicRecallTask(AlgorithmicTask):
    """Dynamic recall: {"seq": s, "query": q} -> [s[i + 1]], i the FIRST index with s[i] == q.

    q must occur in s at an index < len(s) - 1, so the length is at least 2. Input slots: the
    symbols, SEP, then the query symbol. The generator draws s uniformly, then picks i uniformly
    among the first occurrences in s[:-1] (so q is uniform over the distinct symbols of s[:-1]).
    """

    name = "dynamic_recall"
    keys = ("seq", "query")

    def min_length(self) -> int:
        return 2

    def _sample_rest(self, rng: random.Random, seq: list[int]) -> dict:
        return {"query": rng.choice(list(dict.fromkeys(seq[:-1])))}

    def _validate_rest(self, example: dict, seq: list[int]) -> None:
        query = check_int(example["query"], "'query'", self.num_symbols)
        if query not in seq[:-1]:
            raise ValueError(f"'query' {query} does not occur in 'seq' before its last position")

    def _target(self, example: dict) -> list[int]:
        seq = example["seq"]
        return [seq[seq.index(example["query"]) + 1]]

    def _slots(self, example: dict) -> list[tuple[int, ...]]:
        return [*super()._slots(example), (SEP,), (NUM_SPECIALS + example["query"],)]


class _KeyedSortTask(AlgorithmicTask):
    """Sorting by a per-item integer key in 0..num_keys-1 (JSON field `key`), stably.

    Input slots have two fields: (4 + token, 1 + key).
    """

    key: str
    num_keys_arg: str
    distinct: bool

    def __init__(self, num_symbols: int, num_keys: int) -> None:
        super().__init__(num_symbols)
        if not is_int(num_keys) or num_keys < 1:
            raise ValueError(f"{self.num_keys_arg} must be a positive int, got {num_keys!r}")
        self.num_keys = num_keys
        self.keys = ("seq", self.key)
        self.input_vocab_sizes = (NUM_SPECIALS + num_symbols, 1 + num_keys)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_symbols={self.num_symbols}, "
            f"{self.num_keys_arg}={self.num_keys})"
        )

    def _validate_rest(self, example: dict, seq: list[int]) -> None:
        values = check_int_list(example, self.key, self.num_keys)
        if len(values) != len(seq):
            raise ValueError(f"'{self.key}' has {len(values)} items but 'seq' has {len(seq)}")
        if self.distinct and len(set(values)) != len(values):
            repeated = sorted({v for v in values if values.count(v) > 1})
            raise ValueError(f"'{self.key}' must be distinct; repeated: {repeated}")

    def _target(self, example: dict) -> list[int]:
        seq, values = example["seq"], example[self.key]
        return [seq[i] for i in sorted(range(len(seq)), key=values.__getitem__)]

    def _slots(self, example: dict) -> list[tuple[int, ...]]:
        return [
            (NUM_SPECIALS + s, 1 + k)
            for s, k in zip(example["seq"], example[self.key], strict=True)
        ]


class PrioritySortTask(_KeyedSortTask):
    """Priority sort: {"seq": s, "priority": p} -> the tokens of s by ascending p, ties in order.

    p has len(s) values in 0..num_priorities-1, drawn uniformly. Slots: (4 + token, 1 + priority).
    """

    name = "priority_sort"
    key = "priority"
    num_keys_arg = "num_priorities"
    distinct = False

    def __init__(self, num_symbols: int = 10, num_priorities: int = 10) -> None:
        super().__init__(num_symbols, num_priorities)
        self.num_priorities = num_priorities

    def _sample_rest(self, rng: random.Random, seq: list[int]) -> dict:
        return {"priority": [rng.randrange(self.num_keys) for _ in seq]}


class IdSortTask(_KeyedSortTask):
    """Id sort: {"seq": s, "ids": d} -> the tokens of s ordered by ascending id.

    d has len(s) distinct values in 0..num_ids-1, drawn without replacement (so the length is
    at most num_ids). Slots: (4 + token, 1 + id).

    close_ids: the fraction of *training* examples (`training_sample`, so `batch`) whose ids are
    drawn from a random window of 2 x len(s) consecutive ids instead of from all num_ids;
    `sample` (validation, tests, `panm data`) always draws from all ids. A short sequence of
    uniform ids rarely holds two ids that differ by 1 or 2 (0.7 such pairs on average at length
    10, 3.6 at length 22), so a model trained on them alone sees neighbouring ids meet rarely.
    """

    name = "id_sort"
    key = "ids"
    num_keys_arg = "num_ids"
    distinct = True

    def __init__(self, num_symbols: int = 10, num_ids: int = 256, close_ids: float = 0.0) -> None:
        super().__init__(num_symbols, num_ids)
        number = isinstance(close_ids, int | float) and not isinstance(close_ids, bool)
        if not number or not 0.0 <= close_ids <= 1.0:
            raise ValueError(f"close_ids must be a fraction in [0, 1], got {close_ids!r}")
        self.num_ids = num_ids
        self.close_ids = float(close_ids)

    def __repr__(self) -> str:
        close = f", close_ids={self.close_ids:g}" if self.close_ids else ""
        return f"{super().__repr__()[:-1]}{close})"

    def sample(self, rng: random.Random, length: int) -> dict:
        if is_int(length) and length > self.num_ids:
            raise ValueError(f"id_sort needs length <= num_ids = {self.num_ids}, got {length}")
        return super().sample(rng, length)

    def training_sample(self, rng: random.Random, length: int) -> dict:
        example = self.sample(rng, length)
        if self.close_ids and rng.random() < self.close_ids:
            width = min(2 * length, self.num_ids)
            start = rng.randrange(self.num_ids - width + 1)
            example["ids"] = rng.sample(range(start, start + width), length)
        return example

    def _sample_rest(self, rng: random.Random, seq: list[int]) -> dict:
        return {"ids": rng.sample(range(self.num_keys), len(seq))}


ALGORITHMIC_TASKS: dict[str, type[AlgorithmicTask]] = {
    cls.name: cls
    for cls in (CopyTask, ReverseTask, MixTask, DynamicRecallTask, PrioritySortTask, IdSortTask)
}
"""The algorithmic task classes by name."""
