"""Position encodings for Transformers, chosen by name.

Every encoding is a :class:`PositionEncoding` with three hooks, each a no-op unless the encoding
needs it, so that one attention module serves them all:

* `add_to_input(x, positions)`: absolute encodings ("sinusoidal", "learned") add a vector per
  position to the layer input (B, L, D).
* `attention_bias(q_len, k_len, positions)`: relative encodings ("relative" and "t5": T5's
  bucketed bias, "alibi") return a bias (1, heads, Lq, Lk) added to the attention scores of
  every layer; the queries are the last Lq of the Lk key positions (the newest steps in cached
  decoding).
* `rotate(x, positions)`: "rope" rotates queries and keys (B, heads, L, head_dim) by their
  positions.

"none" (NoPE) uses no hook at all. Positions count from 0 in every sequence (`positions` None),
unless the encoding is *randomized* (Ruoss et al. 2023, "Randomized Positional Encodings Boost
Length Generalization of Transformers"): then `draw(length)` gives the positions of a forward
pass, a sorted random subset of 0..random_range-1, so that training on short sequences already
meets the positions (and the gaps between them) of long test sequences. A stack draws once per
forward pass, in training and evaluation alike, and passes the draw to every hook of every layer;
the whole batch shares it (a sequence shorter than the batch's longest takes the first positions).
Cached decoding draws once for all its steps and passes each step the positions so far.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITION_KINDS = ("sinusoidal", "learned", "relative", "t5", "rope", "alibi", "none")
RANDOMIZABLE_KINDS = ("sinusoidal", "relative", "t5", "rope", "alibi")
"""Kinds that accept any position, so `random_range` > 0 (randomized positions)."""


class PositionEncoding(nn.Module):
    """Base class and the "none" encoding (NoPE): adds no position information.

    random_range: 0 for positions 0..L-1; R > 0 for randomized positions drawn from 0..R-1.
    """

    def __init__(self, random_range: int = 0) -> None:
        super().__init__()
        if random_range < 0:
            raise ValueError(f"random_range must be >= 0, got {random_range}")
        self.random_range = random_range

    def draw(self, length: int, device: torch.device) -> Tensor | None:
        """Positions (length,) long for a forward pass over sequences of `length`: None (they
        are 0..length-1) unless randomized, then a sorted uniform subset of 0..random_range-1."""
        if not self.random_range:
            return None
        if length > self.random_range:
            raise ValueError(
                f"randomized positions cover sequences of at most {self.random_range} tokens, "
                f"got {length}; raise random_positions"
            )
        return torch.randperm(self.random_range, device=device)[:length].sort().values

    def add_to_input(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """x (B, L, D) -> (B, L, D) with absolute positions added."""
        return x

    def attention_bias(
        self, q_len: int, k_len: int, positions: Tensor | None = None
    ) -> Tensor | None:
        """A bias (1, heads, Lq, Lk) for attention scores, or None. The keys are at the first
        Lk positions, the queries at the last Lq of them (see `key_minus_query`)."""
        return None

    def rotate(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Queries or keys (B, heads, L, head_dim), rotated by their positions."""
        return x


def position_ids(length: int, positions: Tensor | None, device: torch.device) -> Tensor:
    """The first `length` of `positions` (a draw), or 0..length-1 when there is none; long."""
    if positions is None:
        return torch.arange(length, device=device)
    return positions[:length]


def key_minus_query(
    q_len: int, k_len: int, device: torch.device, positions: Tensor | None = None
) -> Tensor:
    """Offsets (Lq, Lk): entry [i, j] is key j's position minus query i's.

    The keys are at the first Lk positions and the queries at the last Lq of those: all of them
    in self-attention over a whole sequence, the newest steps in cached (incremental) decoding.
    """
    if q_len > k_len:
        raise ValueError(f"queries are the last of the keys' positions: {q_len} > {k_len} keys")
    keys = position_ids(k_len, positions, device)
    return keys[None, :] - keys[k_len - q_len :, None]


class SinusoidalPositions(PositionEncoding):
    """The fixed sin/cos encoding of "Attention Is All You Need"; defined for any length."""

    def __init__(self, dim: int, random_range: int = 0) -> None:
        super().__init__(random_range)
        if dim % 2:
            raise ValueError(f"sinusoidal positions need an even width, got {dim}")
        self.dim = dim

    def add_to_input(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        length = x.shape[1]
        position = position_ids(length, positions, x.device).float()[:, None]
        freq = torch.exp(
            torch.arange(0, self.dim, 2, device=x.device, dtype=torch.float32)
            * (-math.log(10000.0) / self.dim)
        )
        table = torch.zeros(length, self.dim, device=x.device)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq)
        return x + table.to(x.dtype)


class LearnedPositions(PositionEncoding):
    """A learned vector per position 0..max_len-1; longer sequences are a ValueError."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def draw(self, length: int, device: torch.device) -> Tensor | None:
        self._check_length(length)
        return None

    def add_to_input(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        length = x.shape[1]
        if positions is None:
            self._check_length(length)
        return x + self.table(position_ids(length, positions, x.device))

    def _check_length(self, length: int) -> None:
        if length > self.max_len:
            raise ValueError(
                f"learned positions cover at most {self.max_len} positions, got a sequence of "
                f"{length}; raise max_positions or use another position encoding"
            )


class RelativePositionBias(PositionEncoding):
    """T5's learned relative position bias: one scalar per head and bucket of key - query offset.

    Bidirectional (an encoder; every stack of the "relative" kind): positive and negative
    offsets use separate halves of the `num_buckets` buckets; offsets below `num_buckets // 4`
    in magnitude have a bucket each, larger ones share logarithmically wider buckets up to
    `max_distance`, beyond which all share the last bucket. With the default 32 buckets offsets
    0..7 back and 1..7 ahead have a bucket each, then 8-11, 12-15, 16-22, 23-31, 32-45, 46-63,
    64-90, 91 and up.
    Unidirectional (T5's causal decoder; the "t5" kind's decoder): all buckets go to offsets
    <= 0, positive ones fall in bucket 0 with offset 0, so with 32 buckets offsets 0..15 back
    have a bucket each, then 16-18, 19-20, 21-23, 24-26, 27-30, ..., 99-112, 113 and up. A
    causal stack sees no positive offsets, so a bidirectional bias leaves half its buckets
    unused there.
    """

    def __init__(
        self,
        heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        random_range: int = 0,
        bidirectional: bool = True,
    ) -> None:
        super().__init__(random_range)
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.table = nn.Embedding(num_buckets, heads)
        nn.init.normal_(self.table.weight, std=0.02)

    def bucket(self, offset: Tensor) -> Tensor:
        """Bucket ids (same shape) of integer offsets key - query."""
        if self.bidirectional:
            half = self.num_buckets // 2
            side = (offset > 0).long() * half
            distance = offset.abs()
        else:
            half = self.num_buckets
            side = torch.zeros_like(offset)
            distance = (-offset).clamp(min=0)
        exact = half // 2
        log_ratio = torch.log(distance.clamp(min=exact).float() / exact)
        far = exact + (log_ratio / math.log(self.max_distance / exact) * (half - exact)).long()
        far = far.clamp(max=half - 1)
        return side + torch.where(distance < exact, distance, far)

    def attention_bias(self, q_len: int, k_len: int, positions: Tensor | None = None) -> Tensor:
        offset = key_minus_query(q_len, k_len, self.table.weight.device, positions)
        return self.table(self.bucket(offset)).permute(2, 0, 1).unsqueeze(0)


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's head slopes: a geometric sequence, interleaved for non-power-of-two head counts."""
    closest = 2 ** math.floor(math.log2(heads))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    # The remaining heads take every other slope of the sequence for 2 * closest heads.
    return slopes + [2 ** (-4 * (2 * i + 1) / closest) for i in range(heads - closest)]


class ALiBi(PositionEncoding):
    """Attention with Linear Biases: score bias -slope_h * |key - query| (no parameters)."""

    slopes: Tensor

    def __init__(self, heads: int, random_range: int = 0) -> None:
        super().__init__(random_range)
        self.register_buffer("slopes", torch.tensor(alibi_slopes(heads)), persistent=False)

    def attention_bias(self, q_len: int, k_len: int, positions: Tensor | None = None) -> Tensor:
        distance = key_minus_query(q_len, k_len, self.slopes.device, positions).abs()
        return (-self.slopes[:, None, None] * distance).unsqueeze(0)


class RotaryPositions(PositionEncoding):
    """RoPE: rotates queries and keys so that their dot products depend on offsets only.

    Feature pair (i, i + head_dim/2) of position p turns by angle p * base^(-2i/head_dim).
    """

    inv_freq: Tensor

    def __init__(self, head_dim: int, base: float = 10000.0, random_range: int = 0) -> None:
        super().__init__(random_range)
        if head_dim % 2:
            raise ValueError(f"rope needs an even head width, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotate(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        position = position_ids(x.shape[-2], positions, x.device).float()
        angle = position[:, None] * self.inv_freq[None, :]  # (L, head_dim / 2)
        cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def build_position_encoding(
    kind: str, dim: int, heads: int, max_len: int, random_range: int = 0, causal: bool = False
) -> PositionEncoding:
    """The encoding `kind` (one of POSITION_KINDS) for model width `dim` split into `heads`.

    `max_len` bounds only "learned" positions. random_range > 0 randomizes the positions of the
    kinds in RANDOMIZABLE_KINDS (a ValueError for the others). `causal`: the stack is a causal
    decoder, where "t5" gives all of its buckets to past offsets, as T5's decoder does;
    "relative" keeps bidirectional buckets in every stack (the kind panm's earlier runs used).
    """
    if random_range and kind not in RANDOMIZABLE_KINDS:
        raise ValueError(
            f"randomized positions need one of {RANDOMIZABLE_KINDS}, got position {kind!r}"
        )
    if kind == "sinusoidal":
        return SinusoidalPositions(dim, random_range=random_range)
    if kind == "learned":
        return LearnedPositions(dim, max_len)
    if kind in ("relative", "t5"):
        bidirectional = kind == "relative" or not causal
        return RelativePositionBias(heads, random_range=random_range, bidirectional=bidirectional)
    if kind == "rope":
        return RotaryPositions(dim // heads, random_range=random_range)
    if kind == "alibi":
        return ALiBi(heads, random_range=random_range)
    if kind == "none":
        return PositionEncoding()
    raise ValueError(f"position must be one of {POSITION_KINDS}, got {kind!r}")
