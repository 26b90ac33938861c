"""What every task provides, and how examples become padded tensor batches.

An example is a JSON-able dict (the form `panm data` writes and `panm predict` reads). A task turns
it into an :class:`EncodedExample`: the input as a list of slots, each slot a tuple of integer
*fields* (field 0 is the token; sorting tasks add a second field for the priority or the id), and
the target as a list of output-token ids. :func:`collate` pads a list of encoded examples into a
:class:`Batch`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True)
class EncodedExample:
    """One example as ids. `src[i]` is slot i's fields (length F); `tgt` holds output-token ids."""

    src: list[tuple[int, ...]]
    tgt: list[int]


@dataclass
class Batch:
    """A padded batch.

    src: (B, L, F) long, input ids per slot and field (0 where padded).
    src_mask: (B, L) bool, True on real slots.
    tgt: (B, T) long, target output ids (0 where padded).
    tgt_mask: (B, T) bool, True on real target positions.
    """

    src: Tensor
    src_mask: Tensor
    tgt: Tensor
    tgt_mask: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.src.shape[0]

    def padded(self, multiple: int) -> Batch:
        """The batch with its input and target lengths padded up to a multiple of `multiple`
        (masked like any padding), so that batches take few distinct shapes: compiled models
        record one graph per shape. multiple=1 returns the batch itself."""
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        if multiple == 1:
            return self
        extra_src = -self.src.shape[1] % multiple
        extra_tgt = -self.tgt.shape[1] % multiple
        pad = torch.nn.functional.pad
        return Batch(
            src=pad(self.src, (0, 0, 0, extra_src)),
            src_mask=pad(self.src_mask, (0, extra_src)),
            tgt=pad(self.tgt, (0, extra_tgt)),
            tgt_mask=pad(self.tgt_mask, (0, extra_tgt)),
        )


def collate(examples: list[EncodedExample]) -> Batch:
    """Pads encoded examples to the longest input and the longest target of the list."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    max_src = max(len(e.src) for e in examples)
    max_tgt = max(len(e.tgt) for e in examples)
    padding_slot = (0,) * len(examples[0].src[0])
    # one tensor from padded Python lists, not one per example: much faster for large batches
    src = torch.tensor(
        [e.src + [padding_slot] * (max_src - len(e.src)) for e in examples], dtype=torch.long
    )
    tgt = torch.tensor([e.tgt + [0] * (max_tgt - len(e.tgt)) for e in examples], dtype=torch.long)
    src_lengths = torch.tensor([len(e.src) for e in examples])
    tgt_lengths = torch.tensor([len(e.tgt) for e in examples])
    src_mask = torch.arange(max_src) < src_lengths[:, None]
    tgt_mask = torch.arange(max_tgt) < tgt_lengths[:, None]
    return Batch(src=src, src_mask=src_mask, tgt=tgt, tgt_mask=tgt_mask)


class Task(ABC):
    """A sequence-to-sequence task: examples, their targets, and their encoding as ids.

    Subclasses set `name`, `input_vocab_sizes` (one vocabulary size per input field, id 0 is the
    padding id of every field) and `output_vocab_size`. `eos_id` is None for tasks whose output
    length is known from the input (the algorithmic tasks: models decode exactly len(target)
    steps); tasks with a stop symbol (SCAN) set it and append it to every encoded target.
    """

    name: str
    input_vocab_sizes: tuple[int, ...]
    output_vocab_size: int
    eos_id: int | None = None
    bos_id: int | None = None
    default_train_lengths: tuple[int, int] = (1, 10)
    default_test_lengths: tuple[int, ...] = (11, 22, 44, 88)

    @abstractmethod
    def sample(self, rng: random.Random, length: int) -> dict:
        """A random example (JSON dict without "target") whose main sequence has `length` items."""

    @abstractmethod
    def target(self, example: dict) -> list:
        """The correct output of `example`, in JSON values."""

    @abstractmethod
    def validate(self, example: dict) -> None:
        """Raises ValueError naming the problem if `example` is not a well-formed input."""

    @abstractmethod
    def encode(self, example: dict) -> EncodedExample:
        """Ids for `example` (validated first)."""

    @abstractmethod
    def decode_output(self, ids: list[int]) -> list:
        """JSON values for a predicted list of output ids (cut at `eos_id` where there is one)."""

    def examples(self, part: str) -> list[dict] | None:
        """The fixed examples of `part` ("train", "valid" or "test") of a task built on a data
        set (SCAN); None for generated tasks, whose examples are drawn fresh."""
        return None

    def copy_map(self) -> tuple[int, ...]:
        """For each field-0 input id, the output id of the same symbol, or -1 if it has none.

        Pointer-network baselines use it to turn a pointer over input slots into output tokens.
        """
        return (-1,) * self.input_vocab_sizes[0]

    def min_length(self) -> int:
        """The shortest main-sequence length this task can generate."""
        return 1

    def training_sample(self, rng: random.Random, length: int) -> dict:
        """A random training example: `sample`'s, unless a task draws training data its own way."""
        return self.sample(rng, length)

    def batch(self, rng: random.Random, lengths: tuple[int, int], batch_size: int) -> Batch:
        """A training batch of fresh examples (`training_sample`) with lengths drawn uniformly
        from `lengths` (inclusive)."""
        low = max(lengths[0], self.min_length())
        if lengths[1] < low:
            raise ValueError(
                f"{self.name} needs lengths >= {self.min_length()}, got the range {lengths}"
            )
        examples = [
            self.encode(self.training_sample(rng, rng.randint(low, lengths[1])))
            for _ in range(batch_size)
        ]
        return collate(examples)
