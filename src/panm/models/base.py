"""The interface every sequence-to-sequence model of panm implements (PANM and the baselines).

All models map a padded batch of input slots to output-token logits, so that one training and one
evaluation loop serve them all:

    logits = model(src, src_mask, num_steps=T)            # no decoder input (algorithmic tasks)
    logits = model(src, src_mask, tgt_in=prev_tokens)      # teacher forcing (tasks with EOS)

src: (B, L, F) long ids, one per input field; src_mask: (B, L) bool; tgt_in: (B, T) long ids of
the previous output token (BOS first). Returns logits (B, T, output_vocab_size).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panm.pretrained import Pretrained
from panm.tasks.base import Batch, Task


@dataclass
class Seq2SeqConfig:
    """Fields every sequence-to-sequence config has; model configs extend it.

    input_vocab_sizes: vocabulary size of each input field (id 0 = padding).
    output_vocab_size: number of output tokens.
    decoder_input: "none" (decode `num_steps` steps from no token input, as in the algorithmic
        tasks) or "previous_token" (teacher forcing in training, greedy feedback in generation).
    ordinal_fields: indices of input fields whose values are ordered (id_sort's ids: field 1),
        embedded by `OrdinalEmbedding`, so that any linear score of the embedding is monotone
        in the value; default () (every field a free `nn.Embedding`). Why: a free id embedding
        learned from the pairs that meet in training put neighbouring ids in the wrong score
        order (docs/results.md, Appendix A, "ID Sort: neighbouring ids in the wrong score order").
    """

    input_vocab_sizes: tuple[int, ...] = (12,)
    output_vocab_size: int = 10
    decoder_input: str = "none"
    ordinal_fields: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.decoder_input not in ("none", "previous_token"):
            raise ValueError(
                f"decoder_input must be 'none' or 'previous_token', got {self.decoder_input!r}"
            )
        check_ordinal_fields(self.input_vocab_sizes, self.ordinal_fields)


def check_input_fields(name: str, vocab_sizes: tuple[int, ...], fields: tuple[int, ...]) -> None:
    """Raises ValueError unless `fields` (the setting `name`) is a tuple of distinct indices of
    input fields in `vocab_sizes`."""
    noun = name.removesuffix("s").replace("_", " ")  # "ordinal_fields" -> "ordinal field"
    if not isinstance(fields, tuple):
        raise ValueError(f"{name} must be a tuple of field indices, got {type(fields).__name__}")
    for field in fields:
        if not isinstance(field, int) or isinstance(field, bool):
            raise ValueError(f"{name} must hold ints, got {field!r}")
        if not 0 <= field < len(vocab_sizes):
            raise ValueError(
                f"{noun} {field} is not an input field (there are {len(vocab_sizes)}: "
                f"0..{len(vocab_sizes) - 1})"
            )
    if len(set(fields)) != len(fields):
        raise ValueError(f"{name} has duplicates: {fields}")


def check_ordinal_fields(vocab_sizes: tuple[int, ...], ordinal_fields: tuple[int, ...]) -> None:
    """Raises ValueError unless `ordinal_fields` are distinct indices of fields in `vocab_sizes`
    that have at least one value besides padding."""
    check_input_fields("ordinal_fields", vocab_sizes, ordinal_fields)
    for field in ordinal_fields:
        if vocab_sizes[field] < 2:
            raise ValueError(f"ordinal field {field} has no value besides padding (vocab 1)")


class OrdinalEmbedding(nn.Module):
    """An embedding of ordered values: (...) ids -> (..., dim), on a learned line.

    Value k >= 1 is embedded as start + (softplus(steps[0]) + ... + softplus(steps[k-1])) *
    direction; 0 is padding (the zero row). The coefficient of `direction` rises strictly with
    k, so q . embedding(k) rises strictly with k for every q with q . direction > 0, falls
    strictly when it is < 0, and is constant when it is 0: every linear score is monotone in k.
    `weight` is the (num_embeddings, dim) table, as for `nn.Embedding`.
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        if num_embeddings < 2:
            raise ValueError(f"an ordinal field needs values besides padding, got {num_embeddings}")
        self.num_embeddings = num_embeddings
        # Start as nn.Embedding's N(0, 1) rows do: `direction` has N(0, 1) entries and the
        # equal steps add up to sqrt(2), so the first and the last value lie about sqrt(2 * dim)
        # apart, as two independent N(0, 1) rows do, and a query's scores differ between them
        # as much; the line's midpoint is an N(0, 1) point, so rows have entries of about that
        # size (a variance of 1 + 1/6).
        span = math.sqrt(2)
        self.direction = nn.Parameter(torch.randn(dim))
        self.start = nn.Parameter(torch.randn(dim) - span / 2 * self.direction.detach())
        step = span / (num_embeddings - 1)
        inverse_softplus = math.log(math.expm1(step))
        self.steps = nn.Parameter(torch.full((num_embeddings - 1,), inverse_softplus))

    @property
    def weight(self) -> Tensor:
        """The table (num_embeddings, dim); row 0 (padding) is zero."""
        positions = torch.cumsum(F.softplus(self.steps), dim=0)  # (V - 1,), strictly rising
        rows = self.start + positions[:, None] * self.direction  # (V - 1, dim)
        return torch.cat([rows.new_zeros(1, rows.shape[1]), rows])

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight)


class TokenEmbedding(nn.Module):
    """Sum of one embedding per input field: (B, L, F) ids -> (B, L, dim).

    Each field has an `nn.Embedding` (id 0 = padding, a zero row), or an `OrdinalEmbedding` if
    its index is in `ordinal_fields` (see `Seq2SeqConfig`).
    """

    def __init__(
        self, vocab_sizes: tuple[int, ...], dim: int, ordinal_fields: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        check_ordinal_fields(vocab_sizes, ordinal_fields)
        self.tables = nn.ModuleList(
            OrdinalEmbedding(v, dim) if i in ordinal_fields else nn.Embedding(v, dim, padding_idx=0)
            for i, v in enumerate(vocab_sizes)
        )

    def forward(self, ids: Tensor) -> Tensor:
        if ids.shape[-1] != len(self.tables):
            raise ValueError(f"expected {len(self.tables)} input fields, got {ids.shape[-1]}")
        return sum(table(ids[..., i]) for i, table in enumerate(self.tables))  # type: ignore[return-value]

    def factors(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The embedding as rows of one table: (B, L, F) ids -> row ids (B, L, F) into a table
        (V, dim), V the sum of the fields' vocabularies, with forward(ids)[b, l] equal to
        table[rows[b, l]].sum(0)."""
        sizes = torch.tensor([t.num_embeddings for t in self.tables], device=ids.device)
        offsets = torch.cumsum(sizes, 0) - sizes
        return ids + offsets, torch.cat([t.weight for t in self.tables], dim=0)

    def field_rows(self, fields: tuple[int, ...]) -> Tensor:
        """(V,) bool: which rows of the `factors` table belong to `fields`."""
        return torch.cat(
            [
                torch.full((t.num_embeddings,), i in fields, dtype=torch.bool)
                for i, t in enumerate(self.tables)
            ]
        )


class DecoderInput(nn.Module):
    """The decoder's input vectors (B, T, dim) in either decoding mode.

    "previous_token": the embedding of each previous output token, tgt_in (B, T).
    "none": a learned start vector at step 0 and a learned step vector at every later step, for
        `num_steps` steps. (A constant input would leave attention-only decoders unable to tell
        steps apart, since averaging identical vectors gives the same vector at every step.)
    Exactly one of `num_steps` and `tgt_in` must be given, the one the mode needs.
    """

    def __init__(self, mode: str, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.mode = mode
        if mode == "previous_token":
            self.embedding = nn.Embedding(vocab_size, dim)
        else:
            self.start = nn.Parameter(torch.randn(dim) * 0.02)
            self.step = nn.Parameter(torch.randn(dim) * 0.02)

    def forward(self, batch_size: int, num_steps: int | None, tgt_in: Tensor | None) -> Tensor:
        if (num_steps is None) == (tgt_in is None):
            raise ValueError("give exactly one of num_steps and tgt_in")
        if self.mode == "previous_token":
            if tgt_in is None:
                raise ValueError("decoder_input 'previous_token' needs tgt_in, not num_steps")
            return self.embedding(tgt_in)
        if num_steps is None:
            raise ValueError("decoder_input 'none' needs num_steps, not tgt_in")
        if num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {num_steps}")
        steps = torch.cat([self.start[None], self.step[None].expand(num_steps - 1, -1)])
        return steps.expand(batch_size, -1, -1)


DecodeStep = Callable[[Tensor], Tensor]
"""One step of greedy decoding: the step's input tokens (B, 1) -> its logits (B, V)."""


class Seq2SeqModel(nn.Module, Pretrained):
    """Base class: subclasses implement `forward`; `generate` is shared."""

    config: Seq2SeqConfig

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def decoder_start_id(self, task: Task) -> int | None:
        """The id teacher forcing puts before the first target token: the task's BOS (None:
        the model decodes `num_steps` steps without token input)."""
        return task.bos_id

    def start_decoding(self, src: Tensor, src_mask: Tensor, num_steps: int) -> DecodeStep | None:
        """Cached greedy decoding with previous_token input, for models that have it.

        Encodes the batch once and returns a function from the tokens of the next step (B, 1)
        to that step's logits (B, output_vocab_size), which keeps what the past steps left
        (keys and values, a controller state), so that a step does not rerun the steps before
        it. Called once per step, in order, at most `num_steps` times; its logits equal the
        last step's logits of `forward` over all the tokens so far, and its random draws (e.g.
        randomized positions, PANM's eval_base="random") are those of one forward pass over
        `num_steps` steps. None (the default): `generate` reruns the model at every step.
        """
        return None

    @torch.no_grad()
    def generate(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int,
        bos_id: int | None = None,
        eos_id: int | None = None,
        min_steps: Tensor | None = None,
        cache: bool = True,
    ) -> Tensor:
        """Greedy output ids (B, num_steps).

        Without decoder input this is one forward pass. With `previous_token` decoding it feeds
        each step's argmax back as the next input, starting from `bos_id`; any random draw of
        the model (e.g. a random base address) is the same at every step. `min_steps` (B,) long
        with `eos_id` is oracle-length decoding (Newman et al. 2020): sample b may not choose
        `eos_id` before step min_steps[b], so its length is not the model's decision.
        `cache`: use the model's cached decoding (`start_decoding`) where it has one; False
        reruns the whole model over all tokens at every step (quadratic in the steps).
        """
        if (eos_id is None) != (min_steps is None):
            raise ValueError("give both eos_id and min_steps, or neither")
        if self.config.decoder_input == "none":
            if min_steps is not None:
                raise ValueError("oracle-length decoding needs previous_token decoding")
            return self(src, src_mask, num_steps=num_steps).argmax(-1)
        if bos_id is None:
            raise ValueError("bos_id is required to generate with previous_token decoding")
        step_logits = self.start_decoding(src, src_mask, num_steps) if cache else None
        if step_logits is None:
            step_logits = self._rerun_decoding(src, src_mask, num_steps)
        token = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        tokens = []
        for step in range(num_steps):
            logits = step_logits(token)
            if min_steps is not None:
                too_early = (step < min_steps).to(src.device)
                logits[:, eos_id] = logits[:, eos_id].masked_fill(too_early, float("-inf"))
            token = logits.argmax(-1, keepdim=True)
            tokens.append(token)
        return torch.cat(tokens, dim=1)

    def _rerun_decoding(self, src: Tensor, src_mask: Tensor, num_steps: int) -> DecodeStep:
        """Uncached decoding (see `start_decoding`): each step runs the model over all tokens
        so far. Every step starts from the same random state, so a draw the model makes per
        sequence (PANM's eval_base="random") is the same at every step; the last step leaves
        the state as one forward pass would."""
        devices = [src.device] if src.device.type == "cuda" else []
        tokens: list[Tensor] = []

        def step(token: Tensor) -> Tensor:
            tokens.append(token)
            with torch.random.fork_rng(devices, enabled=len(tokens) < num_steps):
                return self(src, src_mask, tgt_in=torch.cat(tokens, dim=1))[:, -1]

        return step


def forward_batch(call: Callable[..., Any], batch: Batch, bos_id: int | None) -> Any:
    """Calls `call(src, src_mask, ...)` (a model or its `trace`) as training does.

    Without `bos_id` (no decoder input) it decodes the target's length in steps; with it, it
    teacher-forces with tgt_in = [BOS] + target[:-1].
    """
    if bos_id is None:
        return call(batch.src, batch.src_mask, num_steps=batch.tgt.shape[1])
    tgt_in = torch.cat([torch.full_like(batch.tgt[:, :1], bos_id), batch.tgt[:, :-1]], dim=1)
    return call(batch.src, batch.src_mask, tgt_in=tgt_in)
