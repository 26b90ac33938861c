"""The Pointer Unit: Mode-1 pointers that move over addresses without seeing memory contents.

Each of G pointers is a GRU whose input is its own previous pointer value (a soft binary address):

    h_t = GRU(p_{t-1}, h_{t-1})                       h_0 = 0
    w_t = softmax_i sim(query(h_t), key(A[i]))        over valid slots only
    p_t = sum_i w_t[i] A[i]

The unit only ever receives addresses, never memory contents: pointer arithmetic ("move one slot
forward") is learned separately from the data, which is what lets it hold at unseen lengths.
The G pointers have separate weights (or, with shared=True, one rule for all) but are evaluated
together in batched matmuls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from panm.memory.recurrence import gru_run

SIMILARITIES = ("dot", "cosine", "bitwise")
POINTER_INPUTS = ("recent", "latest")


class GroupedLinear(nn.Module):
    """G independent linear maps applied at once: (G, B, I) -> (G, B, O). Created with
    groups=1 it applies one map to any number of groups."""

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(groups, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        # (G, B, I) @ (G, I, O) + bias: one batched matmul for all groups.
        weight = self.weight.expand(x.shape[0], -1, -1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight)


class GroupedGRUCell(nn.Module):
    """G independent GRU cells (same equations as `nn.GRUCell`): x (G, B, I), h (G, B, H) -> h'."""

    def __init__(self, groups: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_map = GroupedLinear(groups, input_size, 3 * hidden_size)
        self.hidden_map = GroupedLinear(groups, hidden_size, 3 * hidden_size)

    def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
        """One step; h None means zeros."""
        return self.run([self.input_map(x)], h)[0]

    def run(self, x_gates: Sequence[Tensor], h: Tensor | None) -> list[Tensor]:
        """Steps from inputs already mapped by `input_map`, (G, B, 3H) each, and the start
        state h (G, B, H), None for zeros: the states, (G, B, H) each (see `gru_run`)."""
        hidden_map, groups = self.hidden_map, x_gates[0].shape[0]
        weight = hidden_map.weight.expand(groups, -1, -1)
        return gru_run(x_gates, h, weight, hidden_map.bias.unsqueeze(1))


class SlotKeys(NamedTuple):
    """What `AddressAttention.forward` needs of the slots, made once per sequence by `keys`."""

    keys: Tensor
    """(B, K, L) the slots' keys, transposed."""
    blocked: Tensor
    """(B, 1, L) 0 on slots a pointer may attend to, -inf elsewhere (added to the scores)."""
    scale: Tensor
    """() the score scale, applied to the queries (so constant keys need no gradient)."""


class AddressAttention(nn.Module):
    """Similarity between G pointer queries and the slots' address keys.

    similarity:
      "dot"     scaled dot product between query(h) and g(A[i]), g a small MLP on the address bits
                (the authors' code);
      "cosine"  cosine similarity of the same two vectors times a learned scale (the paper's text);
      "bitwise" keys are the address bits as +-1, the query is a bounded (tanh) per-bit vector, the
                score is their dot product times a learned sharpness: every bit must match, so a
                pointer cannot ignore high bits that never vary inside one short training sequence.
    """

    def __init__(
        self, num_pointers: int, state_dim: int, address_bits: int, key_dim: int, similarity: str
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(
                f"address similarity must be one of {SIMILARITIES}, got {similarity!r}"
            )
        self.similarity = similarity
        if similarity == "bitwise":
            self.query = GroupedLinear(num_pointers, state_dim, address_bits)
            self.log_scale = nn.Parameter(torch.tensor(math.log(2.0)))
            self.key_net: nn.Module | None = None
        else:
            self.query = GroupedLinear(num_pointers, state_dim, key_dim)
            self.key_net = nn.Sequential(
                nn.Linear(address_bits, key_dim), nn.Tanh(), nn.Linear(key_dim, key_dim)
            )
            if similarity == "cosine":
                self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            else:  # a fixed 1/sqrt(K), as in scaled dot-product attention
                self.register_buffer("log_scale", torch.tensor(-0.5 * math.log(key_dim)))

    def keys(self, addresses: Tensor, mask: Tensor) -> SlotKeys:
        """The slots' keys and mask, computed once per sequence: addresses (B, L, bits), mask
        (B, L) True on slots a pointer may attend to."""
        if self.key_net is None:
            keys = 2 * addresses - 1
        else:
            keys = self.key_net(addresses)
            if self.similarity == "cosine":
                keys = nn.functional.normalize(keys, dim=-1)
        blocked = torch.zeros_like(mask, dtype=addresses.dtype).masked_fill(~mask, float("-inf"))
        return SlotKeys(keys.transpose(1, 2), blocked.unsqueeze(1), self.log_scale.exp())

    def queries(self, state: Tensor) -> Tensor:
        """The queries of states (G, B, S): (G, B, K), before the scale."""
        query = self.query(state)
        if self.similarity == "bitwise":
            return torch.tanh(query)
        if self.similarity == "cosine":
            return nn.functional.normalize(query, dim=-1)
        return query

    def scores(self, query: Tensor, slots: SlotKeys) -> Tensor:
        """Scores of `queries` (G, B, K) against the slots' `keys`: (B, G, L), -inf on masked
        slots."""
        return torch.baddbmm(slots.blocked, (query * slots.scale).transpose(0, 1), slots.keys)

    def forward(self, state: Tensor, slots: SlotKeys) -> Tensor:
        """Scores: state (G, B, S), the slots' `keys` -> (B, G, L), -inf on masked slots."""
        return self.scores(self.queries(state), slots)


class PointerUnit(nn.Module):
    """G Mode-1 pointer GRUs plus their address attention; `walk` moves them step by step.

    window=0 is the paper's unit: h_t = GRU(p_{t-1}, h_{t-1}), a state that has seen every step
    so far. With window=K >= 1 every step reruns the GRU from h = 0 over the last K pointer
    values, so the next pointer is a function of those alone, p_t = f(p_{t-K}, ..., p_{t-1}): a
    rule learned on short sequences cannot depend on how many steps have passed, which at test
    lengths is more than training ever showed (K = 1: a stateless unit; K > 1 also gives the rule
    K layers of computation, and the direction of the recent moves). inputs="latest" feeds the
    latest pointer K times instead, p_t = f(p_{t-1}) with K GRU steps of depth: the move then
    depends on the current address alone, so the unit cannot treat the first step (a history
    of one pointer) differently from the others.

    Pointer 0 starts on the first valid slot, pointer 1 on the last one (the paper); further
    pointers alternate (`start_offsets`).

    restart=K >= 1 (bitwise similarity only) lets a pointer whose move leaves the memory jump
    back to where it started: besides the L slots, its softmax has K restart entries, for the
    start slot and the K - 1 slots after it inward (pointer 1, which starts on the last slot,
    counts down), each scored at the move's peak (the score of a slot that matched every bit
    of its query), less a learned margin between 0 and a mismatched bit's cost, plus a learned
    log-preference among the K. A move whose address exists matches every bit and outscores
    them; a move past an end misses at least one bit, so the pointer lands on the restart slot
    it prefers: a second pass over memory (duplicate_string, from the start; odds_first, from
    the slot after it). It stays a function of the addresses alone.

    shared=True gives all G pointers one GRU and one query map (the restart parameters stay per
    pointer): one rule moves every pointer, so a move one pointer learns (a carry across many
    address bits) holds for the others, which may meet it less often in training.
    """

    def __init__(
        self,
        num_pointers: int,
        address_bits: int,
        state_dim: int,
        key_dim: int,
        similarity: str,
        window: int = 0,
        inputs: str = "recent",
        restart: int = 0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"pointer window must be >= 0, got {window}")
        if inputs not in POINTER_INPUTS:
            raise ValueError(f"pointer inputs must be one of {POINTER_INPUTS}, got {inputs!r}")
        if inputs == "latest" and window == 0:
            raise ValueError("pointer inputs 'latest' needs a pointer window >= 1")
        if restart < 0:
            raise ValueError(f"pointer restart must be >= 0, got {restart}")
        if restart and similarity != "bitwise":
            raise ValueError("pointer restart needs the 'bitwise' address similarity")
        self.num_pointers = num_pointers
        self.window = window
        self.latest_only = inputs == "latest"
        rules = 1 if shared else num_pointers  # GroupedLinear applies one map to every group
        self.cell = GroupedGRUCell(rules, address_bits, state_dim)
        self.attention = AddressAttention(rules, state_dim, address_bits, key_dim, similarity)
        self.state_dim = state_dim
        self.restart = restart
        if restart:
            # a restart scores 2 * sigmoid(margin) scales below the peak: between an exact
            # move (0) and a move that misses one bit (2), 1 at the start
            self.restart_margin = nn.Parameter(torch.zeros(num_pointers, 1, 1))
            self.restart_preference = nn.Parameter(torch.zeros(num_pointers, restart))

    def start_offsets(self, lengths: Tensor) -> Tensor:
        """Slot offset (from the first valid slot) of each pointer's initial address:
        (B,) valid-slot counts -> (B, G) long. Pointer 0: 0, pointer 1: length - 1, alternating."""
        first, last = torch.zeros_like(lengths), lengths - 1
        return torch.stack([first if g % 2 == 0 else last for g in range(self.num_pointers)], 1)

    def restart_offsets(self, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The slots a restart may land on, as offsets from the first valid slot: the start
        and the K - 1 slots after it inward, (B, G, K) long, and whether each is a valid slot,
        (B, G, K) bool. lengths: (B,) valid-slot counts."""
        inward = torch.arange(self.restart, device=lengths.device)
        direction = torch.tensor(
            [1 - 2 * (g % 2) for g in range(self.num_pointers)], device=lengths.device
        )
        offsets = self.start_offsets(lengths).unsqueeze(-1) + direction.view(1, -1, 1) * inward
        last = lengths.view(-1, 1, 1) - 1
        valid = (offsets >= 0) & (offsets <= last)
        return torch.minimum(offsets.clamp(min=0), last), valid

    def walk(
        self,
        start: Tensor,
        addresses: Tensor,
        mask: Tensor,
        num_steps: int,
        hard: bool = False,
        restart_slots: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Moves the pointers `num_steps` steps from their start values.

        start: (B, G, bits) initial pointer values; addresses: (B, L, bits) the slots'
        addresses; mask: (B, L) bool, True on slots a pointer may attend to. hard: a pointer
        whose largest weight is above one half reads that slot alone (see `commit`), and with
        restart a pointer with most of its weight on the restart and one slot restarts exactly
        when no slot has the address its query asks for (each bit by its sign), not when a
        restart outscores a near miss on a bit the query is unsure of; a pointer spread wider
        stays as the soft walk leaves it.
        restart_slots: with restart, the slot indices a restart may land on and whether each
        may, (B, G, K) long and bool (`restart_offsets` plus the first slot's index).
        Returns the attention weights (B, T, G, L), exactly 0 where mask is False, and the
        pointer values (B, T, G, bits), p_t = sum_i w_t[i] A[i].
        """
        keys = self.attention.keys(addresses, mask)  # once per sequence, not per step
        if self.restart:
            if restart_slots is None:
                raise ValueError("a pointer unit with restart needs restart_slots")
            slots, valid = restart_slots
            # -inf where a restart may not land, added after the scale (never inf times 0)
            restart_blocked = torch.zeros_like(valid, dtype=start.dtype).masked_fill(
                ~valid, float("-inf")
            )
            preference = (self.restart_preference + restart_blocked).log_softmax(-1)
            margin = 2 * self.restart_margin.sigmoid().transpose(0, 1)  # (1, G, 1)
            restart_bias = torch.where(valid, preference, 0.0) - margin  # (B, G, K)
        # the GRUs' input maps of the last pointer values, (G, B, 3S) each
        recent = [self.cell.input_map(start.transpose(0, 1))]
        state: Tensor | None = None
        weights, pointers = [], []
        for _ in range(num_steps):
            if self.window == 0:
                state = self.cell.run(recent[-1:], state)[-1]
            else:
                inputs = [recent[-1]] * self.window if self.latest_only else recent
                state = self.cell.run(inputs, None)[-1]
            query = self.attention.queries(state)  # (G, B, bits)
            scores = self.attention.scores(query, keys)  # (B, G, L)
            if not self.restart:
                w = scores.softmax(dim=-1)
            else:  # the restart entries score at the peak, in units of the scale
                peak = query.abs().sum(-1).transpose(0, 1).unsqueeze(-1)  # (B, G, 1)
                restart = (peak + restart_bias) * keys.scale + restart_blocked
                both = torch.cat([scores, restart], dim=-1).softmax(dim=-1)
                if hard:  # restart exactly when no slot has the address asked for, if most
                    # of the weight is on the restart and one slot: the choice is between them
                    num_slots = scores.shape[-1]
                    top_slot = both[..., :num_slots].amax(dim=-1, keepdim=True)
                    decided = top_slot + both[..., num_slots:].sum(-1, keepdim=True) > 0.5
                    found = self._address_found(query, keys)  # (B, G, 1)
                    scores = scores.masked_fill(decided & ~found, float("-inf"))
                    restart = restart.masked_fill(decided & found, float("-inf"))
                    both = torch.cat([scores, restart], dim=-1).softmax(dim=-1)
                w = both[..., : scores.shape[-1]].scatter_add(
                    -1, slots, both[..., scores.shape[-1] :]
                )
            if hard:
                w = commit(w)
            pointer = w.bmm(addresses)
            weights.append(w)
            pointers.append(pointer)
            projected = self.cell.input_map(pointer.transpose(0, 1))
            recent = [*recent, projected][-max(self.window, 1) :]
        return torch.stack(weights, dim=1), torch.stack(pointers, dim=1)

    @staticmethod
    def _address_found(query: Tensor, keys: SlotKeys) -> Tensor:
        """Whether a slot a pointer may attend to has the address whose bits are the signs of
        its query (G, B, bits): (B, G, 1) bool."""
        signs = query.sign().transpose(0, 1)  # (B, G, bits)
        matches = torch.baddbmm(keys.blocked, signs, keys.keys)  # bits where every bit agrees
        return (matches > query.shape[-1] - 0.5).any(dim=-1, keepdim=True)


def commit(weights: Tensor) -> Tensor:
    """One-hot on the largest weight where it is above one half, else unchanged: (..., L).
    Invalid slots have weight 0, so a committed pointer is always on a valid slot."""
    top, slot = weights.max(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(weights).scatter_(-1, slot, 1.0)
    return torch.where(top > 0.5, one_hot, weights)
