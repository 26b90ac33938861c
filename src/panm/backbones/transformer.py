"""Pre-LayerNorm Transformer encoder and decoder with a choice of position encoding.

Shapes: B batch, L source length, T target length, D model width, H heads.
Padded keys get exactly zero attention weight, so a sample's result never depends on the other
samples of its batch. The position encoding of each stack is applied as `positions.py` describes:
absolute ones to the stack's input, relative ones inside every self-attention layer (shared by
all layers, as in T5). Cross-attention uses no position information.

Cached (incremental) decoding: `TransformerDecoder.start` projects the memory's keys and values
once per depth (per layer, or per application of the shared layer) and draws the positions of
all steps; `TransformerDecoder.step` then runs the newest step(s) only, appending their
self-attention keys and values to a `KeyValueCache` per depth, so that a step costs O(steps so
far) instead of rerunning the whole prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panm.backbones.positions import PositionEncoding, build_position_encoding, position_ids


def attention_mask(
    bias: Tensor | None,
    key_mask: Tensor | None,
    causal: bool,
    query: Tensor,
    k_len: int,
) -> Tensor | None:
    """A float mask (B or 1, H or 1, Lq, Lk) for `scaled_dot_product_attention`, or None.

    bias: (1, H, Lq, Lk) or None; key_mask: (B, Lk) bool, True on real keys, or None;
    query: (B, H, Lq, D/H), whose length, dtype and device the mask follows. The queries are
    the last Lq of the Lk keys' steps, so `causal` lets query i see keys 0..Lk-Lq+i.
    Disallowed scores get the most negative finite value instead of -inf: their weight is still
    exactly 0 whenever a query has any allowed key, and a query with none gets no NaN.
    """
    if bias is not None:
        bias = bias.to(query.dtype)
    if key_mask is None and not causal:
        return bias
    q_len = query.shape[-2]
    allowed = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=query.device)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if causal:
        allowed = allowed.tril(k_len - q_len)
    if bias is None:
        bias = torch.zeros((), dtype=query.dtype, device=query.device)
    return torch.where(allowed, bias, torch.finfo(query.dtype).min)


class KeyValueCache:
    """Keys and values (B, H, capacity, D/H) of one attention layer; the first `length` steps
    are filled (all of them for a memory, the steps decoded so far for self-attention)."""

    def __init__(self, keys: Tensor, values: Tensor, length: int) -> None:
        self.keys, self.values, self.length = keys, values, length

    def append(self, keys: Tensor, values: Tensor) -> None:
        """Stores the keys and values (B, H, n, D/H) of n more steps."""
        end = self.length + keys.shape[2]
        if end > self.keys.shape[2]:
            raise ValueError(f"the cache holds {self.keys.shape[2]} steps, not {end}")
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end

    def filled(self) -> tuple[Tensor, Tensor]:
        """The keys and values (B, H, length, D/H) stored so far."""
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]


class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries from x over keys and values from `context`."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        position: PositionEncoding | None = None,
        positions: Tensor | None = None,
        cache: KeyValueCache | None = None,
    ) -> Tensor:
        """x (B, Lq, D), context (B, Lk, D), key_mask (B, Lk) bool -> (B, Lq, D).

        `causal` lets a query see the keys up to its own step only (query i of Lq sees keys
        0..Lk-Lq+i, see `attention_mask`); `position` rotates queries and keys and/or
        biases the scores (self-attention only: queries and keys share the positions, 0, 1, ...
        or the stack's draw `positions` (Lq,) of a randomized encoding).
        With a `cache` (cached decoding) the keys and values of `context`, if given, are
        appended to it and the queries attend to all its steps; in self-attention x is then
        the newest Lq steps and `positions` those of all cached steps (the queries' the last).
        """
        batch, q_len, dim = x.shape
        q = self.query(x).view(batch, q_len, self.heads, -1).transpose(1, 2)  # (B, H, Lq, D/H)
        newest = None if positions is None else positions[-q_len:]
        if position is not None:
            q = position.rotate(q, newest)
        if context is not None:
            k, v = self.keys_values(context)
            if position is not None:
                k = position.rotate(k, newest)
            if cache is not None:
                cache.append(k, v)
        if cache is not None:
            k, v = cache.filled()
        elif context is None:
            raise ValueError("give a context or a cache to attend to")
        k_len = k.shape[2]
        bias = None if position is None else position.attention_bias(q_len, k_len, positions)
        mask = attention_mask(bias, key_mask, causal, q, k_len)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.resid_dropout(self.out(y.transpose(1, 2).reshape(batch, q_len, dim)))

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, Lk, D/H) of context (B, Lk, D), before any rotation."""
        batch, k_len, _ = context.shape
        kv = self.key_value(context).view(batch, k_len, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def context_cache(self, context: Tensor) -> KeyValueCache:
        """A full cache of the keys and values of context (B, Lk, D), e.g. a decoder's memory."""
        keys, values = self.keys_values(context)
        return KeyValueCache(keys, values, context.shape[1])

    def empty_cache(self, like: Tensor, capacity: int) -> KeyValueCache:
        """An empty cache for `capacity` steps of a batch like `like` (B, ..., D)."""
        shape = (like.shape[0], self.heads, capacity, like.shape[-1] // self.heads)
        return KeyValueCache(like.new_empty(shape), like.new_empty(shape), 0)


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(D, ff_dim), GELU, Linear(ff_dim, D), dropout."""

    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    """Pre-LN block: x + SelfAttention(LN(x)), then x + FeedForward(LN(x))."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.ln_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)

    def forward(
        self, x: Tensor, mask: Tensor, position: PositionEncoding, positions: Tensor | None
    ) -> Tensor:
        h = self.ln_attn(x)
        x = x + self.attn(h, h, key_mask=mask, position=position, positions=positions)
        return x + self.ff(self.ln_ff(x))


class DecoderLayer(nn.Module):
    """Pre-LN block: self-attention, cross-attention over the memory, feed-forward."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_self = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.ln_cross = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.ln_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor,
        causal: bool,
        position: PositionEncoding,
        positions: Tensor | None,
        caches: tuple[KeyValueCache, KeyValueCache] | None = None,
    ) -> Tensor:
        """`caches` (cached decoding): the self-attention cache of the steps so far and the
        memory's cache, which replaces `memory` (None then)."""
        steps, memory_cache = (None, None) if caches is None else caches
        h = self.ln_self(x)
        x = x + self.self_attn(
            h, h, causal=causal, position=position, positions=positions, cache=steps
        )
        x = x + self.cross_attn(self.ln_cross(x), memory, key_mask=memory_mask, cache=memory_cache)
        return x + self.ff(self.ln_ff(x))


class _LayerStack(nn.Module):
    """Position encoding, input dropout, `layers` layers of `layer_class`, final LayerNorm.

    shared_layers: one layer's weights applied `layers` times (the Universal Transformer's
    weight sharing across depth, without its adaptive halting); False: `layers` layers.
    """

    layer_class: type[nn.Module]
    causal_positions = False

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int,
        ff_dim: int,
        dropout: float,
        position: str,
        max_len: int = 512,
        random_positions: int = 0,
        shared_layers: bool = False,
    ) -> None:
        super().__init__()
        self.position = build_position_encoding(
            position, dim, heads, max_len, random_positions, causal=self.causal_positions
        )
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            self.layer_class(dim, heads, ff_dim, dropout)
            for _ in range(min(layers, 1) if shared_layers else layers)
        )
        self.depth = layers
        self.ln_final = nn.LayerNorm(dim)

    def stack(self) -> list[nn.Module]:
        """The layers in the order they run: `depth` of them (one repeated when shared)."""
        return [self.layers[i % len(self.layers)] for i in range(self.depth)]


class TransformerEncoder(_LayerStack):
    """A stack of pre-LN encoder layers with a final LayerNorm.

    position: one of `POSITION_KINDS`; max_len bounds only "learned" positions;
    random_positions > 0 randomizes positions over 0..random_positions-1 (see `positions.py`).
    forward: x (B, L, D), mask (B, L) bool (True on real slots) -> (B, L, D).
    """

    layer_class = EncoderLayer

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        positions = self.position.draw(x.shape[1], x.device)
        x = self.dropout(self.position.add_to_input(x, positions))
        for layer in self.stack():
            x = layer(x, mask, self.position, positions)
        return self.ln_final(x)


class TransformerDecoder(_LayerStack):
    """A stack of pre-LN decoder layers (self- and cross-attention) with a final LayerNorm.

    forward: x (B, T, D) decoder inputs, memory (B, L, D) encoder outputs, memory_mask (B, L)
    bool, causal (step t attends to steps <= t only) -> (B, T, D). The "t5" position kind
    gives this stack unidirectional buckets, which need `causal`.
    """

    layer_class = DecoderLayer
    causal_positions = True

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor, causal: bool) -> Tensor:
        if not causal and not getattr(self.position, "bidirectional", True):
            raise ValueError("this decoder's position buckets are unidirectional: use causal=True")
        positions = self.position.draw(x.shape[1], x.device)
        x = self.dropout(self.position.add_to_input(x, positions))
        for layer in self.stack():
            x = layer(x, memory, memory_mask, causal, self.position, positions)
        return self.ln_final(x)

    def start(self, memory: Tensor, memory_mask: Tensor, num_steps: int) -> DecoderCache:
        """The cache for decoding up to `num_steps` steps over memory (B, L, D) one call of
        `step` at a time: the memory's keys and values, projected once per layer, and the
        positions of all steps, drawn once (as `forward` over `num_steps` steps draws them)."""
        drawn = self.position.draw(num_steps, memory.device)
        return DecoderCache(
            layers=[
                (
                    layer.self_attn.empty_cache(memory, num_steps),
                    layer.cross_attn.context_cache(memory),
                )
                for layer in self.stack()
            ],
            memory_mask=memory_mask,
            positions=position_ids(num_steps, drawn, memory.device),
        )

    def step(self, x: Tensor, cache: DecoderCache) -> Tensor:
        """The next n steps x (B, n, D) -> (B, n, D), as causal `forward` over all the steps so
        far gives them; their keys and values join the cache."""
        done = cache.length
        end = done + x.shape[1]
        if end > len(cache.positions):
            raise ValueError(f"the cache was started for {len(cache.positions)} steps, not {end}")
        positions = cache.positions[:end]
        x = self.dropout(self.position.add_to_input(x, positions[done:]))
        for layer, caches in zip(self.stack(), cache.layers, strict=True):
            x = layer(x, None, cache.memory_mask, True, self.position, positions, caches)
        cache.length = end
        return self.ln_final(x)


@dataclass
class DecoderCache:
    """A `TransformerDecoder`'s state in cached decoding (see `TransformerDecoder.start`).

    layers: per depth (see `_LayerStack.stack`), the self-attention cache of the steps so far
        and the memory's cache.
    memory_mask: (B, L) bool. positions: (num_steps,) long, every step's position.
    length: the steps decoded so far.
    """

    layers: list[tuple[KeyValueCache, KeyValueCache]]
    memory_mask: Tensor
    positions: Tensor
    length: int = 0
