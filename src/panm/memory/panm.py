"""PANM: Pointer-Augmented Neural Memory over any encoder's memory.

Read top to bottom: the config, the output, then `PANM.forward`, which

1. gives every memory slot a binary address (`AddressBank`), with a random base in training;
2. optionally appends training-only *decoy* slots (see `PANMConfig.decoy_slots`);
3. moves the Mode-1 pointers over the addresses step by step (the Pointer Unit, which sees
   addresses only);
4. reads memory at the pointers' weights (Mode-1), queries memory by content with those reads
   (Mode-2), runs the GRU controller over the reads and the optional decoder input, and maps
   [controller state, Mode-1 reads, Mode-2 reads] of every step to outputs with an MLP.

Shapes: B batch, L memory slots, D memory width, T decoding steps, G Mode-1 pointers, H Mode-2
pointers, b address bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from panm.memory.addresses import BASE_DISTRIBUTIONS, AddressBank
from panm.memory.pointer_unit import POINTER_INPUTS, POINTER_STARTS, SIMILARITIES, PointerUnit
from panm.memory.relational import RelationalAccess
from panm.pretrained import Pretrained

CONTROLLER_INITS = ("memory_sum", "memory_mean", "given")
EVAL_BASES = ("zero", "random")
EVAL_POINTERS = ("soft", "hard")
MODE2_QUERIES = ("reads", "constant")
MODE2_SELECTIONS = ("soft", "hard")


@dataclass
class PANMConfig:
    """Configuration of the PANM memory.

    memory_dim: width D of memory slots.
    output_dim: width of the output MLP's result (the vocabulary size for a token decoder).
    hidden_dim: width of the controller GRU and of the output MLP's hidden layer.
    input_dim: width E of the optional per-step decoder input z_t (0: no input).
    address_bits: b; 2**b addresses, so memory may have at most 2**b slots.
    num_mode1: Mode-1 pointers (G). Pointer 0 starts at the first slot, 1 at the last, alternating.
    num_mode2: Mode-2 pointers (H); 0 disables relational access.
    mode2_exclusion: each Mode-2 head avoids the slots it has already read (see
        `panm.memory.relational`; not in the paper): a head that reads one slot per step then
        reads every slot once, in the order its scores give (a sort by content).
    mode2_query: "reads" (the paper: each step's Mode-2 query is a projection of the Mode-1
        reads) or "constant" (a learned query per head, the same at every step: the head ranks
        slots by content alone, which with mode2_exclusion is a sort).
    mode2_selection: "soft" (the paper: each Mode-2 read is the attention-weighted mix of
        slots) or "hard" (each head reads its highest-scoring slot alone, in training too, with
        the softmax's gradient; see `panm.memory.relational`).
    mode2_tie_margin: with hard selection, a head reads the first slot (in memory order) whose
        score is within this margin of the best, so equal keys are read in input order (a
        stable sort with mode2_exclusion). 0: the best slot (the first of exact ties).
    mode2_decoys: whether Mode-2 also attends over the training-only decoy slots. Decoys exist
        to teach the address attention; to Mode-2 they are slots of another sample whose content
        no test sequence has, which a content search (the query's occurrence, the smallest key)
        cannot tell from the real ones. True keeps the behaviour the Copy/Reverse/Mix results
        were measured with (they use Mode-1).
    pointer_dim: state width of each Pointer Unit GRU.
    key_dim: width of address keys ("dot"/"cosine") and of Mode-2 keys.
    address_similarity: "dot", "cosine" or "bitwise" (see `AddressAttention`).
    pointer_window: 0: the Pointer Unit GRU carries its state across all steps (the paper);
        K >= 1: each step reruns it from zero over the last K pointer values, so it cannot
        drift with the step count (see `PointerUnit`).
    pointer_inputs: with pointer_window K >= 1, "recent" (the last K pointer values) or
        "latest" (the latest one, K times: the move depends on the current address alone).
    pointer_start: "inside" (first and last valid slot, the paper) or "outside" (one slot
        before the first and after the last, so a "+1" rule is right from step 1).
    base_sampling: draw the base address per sequence in training (base 0 otherwise).
    base_distribution: how it is drawn: "uniform" (the paper) or "carries" (every carry
        length equally often; see `panm.memory.addresses`).
    eval_base: the base outside training: "zero" (the paper) or "random" (uniform per
        sequence: a diagnostic of whether the learned pointer rule holds from every address,
        since with base 0 all test sequences of one length share one pointer trajectory).
    eval_pointers: the Mode-1 pointers outside training: "soft" (the paper: each read is the
        attention-weighted mix of slots and the pointer the weighted sum of their addresses) or
        "hard": a pointer that has committed to a slot (largest weight above one half) reads
        that slot alone and its next value is exactly that slot's address; a pointer spread
        over many slots (often one the task does not use, whose read is then about the mean
        of memory) stays soft, as in training. Training is always soft (the gradient needs
        it). "hard" removes the mixing of two slots where the attention is right but not sharp,
        at lengths whose addresses differ in bits that training sequences never vary.
    decoy_slots: training-only extra slots per sequence. Each copies the address of a random
        real slot with one random bit flipped (kept only where that address lies outside the
        sequence's own window) and the memory content of the same slot index in another sample
        of the batch. They teach the pointer to match every address bit, including high bits
        that never differ within one short training sequence. Never used in evaluation.
    controller_init: initial controller state: "memory_sum" (projected sum of valid memory
        slots, as in the paper), "memory_mean" (their mean, which does not grow with length) or
        "given" (the caller passes `controller_state`, e.g. an encoder's final state).
    controller_reads: whether the controller GRU takes the Mode-1 reads as input (the paper)
        besides z_t. The output MLP sees the current reads either way. Without them the
        controller cannot carry earlier reads forward, so it cannot answer step t from a read
        made at step t-1 (a "delay line" that fits short sequences with the pointer one slot
        ahead and fails on the first item); the pointer must be on the right slot.
    initial_read: before the first step, the controller reads the slots under the initial
        pointers (their dereference, step 0). A Pointer Unit that applies one rule at every
        step ("+1") reads slot t at step t from an "inside" start, one slot ahead of the output;
        with the step-0 read, answering from the previous read is right from the first item.
        Needs controller_reads and pointer_start="inside".
    """

    memory_dim: int = 128
    output_dim: int = 10
    hidden_dim: int = 128
    input_dim: int = 0
    address_bits: int = 8
    num_mode1: int = 2
    num_mode2: int = 1
    mode2_exclusion: bool = False
    mode2_query: str = "reads"
    mode2_selection: str = "soft"
    mode2_tie_margin: float = 0.0
    mode2_decoys: bool = True
    pointer_dim: int = 64
    key_dim: int = 64
    address_similarity: str = "dot"
    pointer_window: int = 0
    pointer_inputs: str = "recent"
    pointer_start: str = "inside"
    base_sampling: bool = True
    base_distribution: str = "uniform"
    eval_base: str = "zero"
    eval_pointers: str = "soft"
    decoy_slots: int = 0
    controller_init: str = "memory_sum"
    controller_reads: bool = True
    initial_read: bool = False

    def __post_init__(self) -> None:
        choices = {
            "address_similarity": SIMILARITIES,
            "pointer_start": POINTER_STARTS,
            "pointer_inputs": POINTER_INPUTS,
            "base_distribution": BASE_DISTRIBUTIONS,
            "eval_base": EVAL_BASES,
            "eval_pointers": EVAL_POINTERS,
            "controller_init": CONTROLLER_INITS,
            "mode2_query": MODE2_QUERIES,
            "mode2_selection": MODE2_SELECTIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.pointer_inputs == "latest" and self.pointer_window == 0:
            raise ValueError("pointer_inputs='latest' needs pointer_window >= 1")
        if self.initial_read and not (self.controller_reads and self.pointer_start == "inside"):
            raise ValueError("initial_read needs controller_reads=True and pointer_start='inside'")
        if self.mode2_tie_margin < 0:
            raise ValueError(f"mode2_tie_margin must be >= 0, got {self.mode2_tie_margin}")
        if self.mode2_tie_margin and self.mode2_selection != "hard":
            raise ValueError("mode2_tie_margin needs mode2_selection='hard'")
        if self.mode2_exclusion and self.num_mode2 == 0:
            raise ValueError("mode2_exclusion needs num_mode2 >= 1")
        if self.num_mode1 < 1:
            raise ValueError(f"num_mode1 must be at least 1, got {self.num_mode1}")
        for name in ("num_mode2", "decoy_slots", "input_dim", "pointer_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("memory_dim", "output_dim", "hidden_dim", "pointer_dim", "key_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class PANMOutput:
    """What `PANM.forward` returns.

    logits: (B, T, output_dim) output MLP results.
    pointers: (B, T, G, b) Mode-1 pointer values (soft binary addresses; exact slot addresses
        where a pointer committed, with eval_pointers="hard").
    mode1_weights: (B, T, G, L) Mode-1 attention over the real slots.
    mode2_weights: (B, T, H, L) Mode-2 attention over the real slots.
    mode2_pointers: (B, T, H, b) Mode-2 pointer values.
    addresses: (B, L, b) the slots' binary addresses.
    controller_state: (B, hidden_dim) the controller's last state.
    """

    logits: Tensor
    pointers: Tensor
    mode1_weights: Tensor
    mode2_weights: Tensor
    mode2_pointers: Tensor
    addresses: Tensor
    controller_state: Tensor


class PANM(nn.Module, Pretrained):
    """Pointer-Augmented Neural Memory decoder over a given memory (any encoder's output)."""

    config_class = PANMConfig
    model_type = "panm_memory"

    def __init__(self, config: PANMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.address_bank = AddressBank(c.address_bits)
        self.pointer_unit = PointerUnit(
            c.num_mode1,
            c.address_bits,
            c.pointer_dim,
            c.key_dim,
            c.address_similarity,
            window=c.pointer_window,
            inputs=c.pointer_inputs,
            start=c.pointer_start,
        )
        self.relational = (
            RelationalAccess(
                c.memory_dim,
                c.num_mode1,
                c.num_mode2,
                c.key_dim,
                exclusion=c.mode2_exclusion,
                hard=c.mode2_selection == "hard",
                tie_margin=c.mode2_tie_margin,
                constant_query=c.mode2_query == "constant",
            )
            if c.num_mode2
            else None
        )
        self.controller_init = (
            nn.Linear(c.memory_dim, c.hidden_dim) if c.controller_init != "given" else None
        )
        reads_width = c.num_mode1 * c.memory_dim if c.controller_reads else 0
        self.controller = nn.GRU(max(1, c.input_dim + reads_width), c.hidden_dim, batch_first=True)
        features = c.hidden_dim + (c.num_mode1 + c.num_mode2) * c.memory_dim
        self.output_head = nn.Sequential(
            nn.Linear(features, c.hidden_dim), nn.ReLU(), nn.Linear(c.hidden_dim, c.output_dim)
        )

    def forward(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        num_steps: int | None = None,
        inputs: Tensor | None = None,
        base_address: Tensor | int | None = None,
        controller_state: Tensor | None = None,
    ) -> PANMOutput:
        """Decode T steps over `memory`.

        memory: (B, L, D) slots from any encoder. memory_mask: (B, L) bool, True on valid slots.
        Give either `num_steps` (no decoder input; needs input_dim == 0) or `inputs` (B, T, E)
        (teacher forcing or any per-step input; needs input_dim == E).
        base_address: (B,) long or an int: overrides the base (default: random in training when
        base_sampling is on, else 0). controller_state: (B, hidden_dim), required when
        controller_init == "given".
        """
        num_steps = self._validate(memory, memory_mask, num_steps, inputs, controller_state)
        c = self.config
        batch, num_slots, _ = memory.shape
        lengths = memory_mask.sum(dim=1)

        base = self._base_address(base_address, lengths)
        addresses = self.address_bank(base, num_slots)
        # Padded slots hold exact zeros, whatever the encoder left there (even NaN).
        memory = memory.masked_fill(~memory_mask.unsqueeze(-1), 0.0)
        slot_memory, slot_addresses, slot_mask = memory, addresses, memory_mask
        if self.training and c.decoy_slots:
            slot_memory, slot_ids, slot_mask = self._with_decoys(memory, memory_mask, base, lengths)
            slot_addresses = self.address_bank.lookup(slot_ids)

        # Everything that depends only on the sequence is computed once, not per step.
        address_keys = self.pointer_unit.attention.keys(slot_addresses)
        start = self.pointer_unit.start_offsets(lengths)  # (B, G) slot offsets
        pointer = self.address_bank.lookup((start + base.unsqueeze(1)) % self.address_bank.size)
        pointer_state = memory.new_zeros(batch, c.num_mode1, c.pointer_dim)

        # Only the pointers must run step by step: they never see memory or the controller,
        # so the reads, the controller GRU and Mode-2 then run over all steps at once.
        unit = self.pointer_unit
        hard = not self.training and c.eval_pointers == "hard"
        pointers, projected, weights = [pointer], [], []
        for _ in range(num_steps):
            projected.append(unit.project(pointers[-1]))  # once per pointer, reused by a window
            w1, pointer_state = unit(projected, pointer_state, address_keys, slot_mask)
            if hard:
                w1 = _commit(w1)
            pointers.append(w1.bmm(slot_addresses))  # p_t = sum_i w_t[i] A[i]
            weights.append(w1)
        w1 = torch.stack(weights, dim=1)  # (B, T, G, L')
        value1 = _weighted_read(w1, slot_memory)  # (B, T, G, D): v_t = sum_i w_t[i] M[i]

        states, last_state = self._run_controller(
            memory, lengths, start, value1, inputs, controller_state
        )
        features = [states, value1.flatten(2)]
        w2 = memory.new_zeros(batch, num_steps, 0, slot_memory.shape[1])
        if self.relational is not None:
            memory_keys = self.relational.keys(slot_memory)
            mode2_mask = slot_mask
            if not c.mode2_decoys:  # decoys, if any, are the slots after the real ones
                real = torch.arange(slot_mask.shape[1], device=slot_mask.device) < num_slots
                mode2_mask = slot_mask & real
            w2 = self.relational(value1, memory_keys, mode2_mask)  # (B, T, H, L')
            features.append(_weighted_read(w2, slot_memory).flatten(2))
        return PANMOutput(
            logits=self.output_head(torch.cat(features, dim=-1)),
            pointers=torch.stack(pointers[1:], dim=1),
            mode1_weights=w1[..., :num_slots],
            mode2_weights=w2[..., :num_slots],
            mode2_pointers=_weighted_read(w2, slot_addresses),
            addresses=addresses,
            controller_state=last_state,
        )

    def _run_controller(
        self,
        memory: Tensor,
        lengths: Tensor,
        start: Tensor,
        value1: Tensor,
        inputs: Tensor | None,
        given_state: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Controller states (B, T, hidden) for all steps, and the last state (B, hidden)."""
        c = self.config
        batch, num_steps = value1.shape[:2]
        parts = [inputs] if inputs is not None else []
        if c.controller_reads:
            parts.append(value1.flatten(2))
        if not parts:  # nothing to read: a constant input (nn.GRU needs one feature)
            parts.append(memory.new_ones(batch, num_steps, 1))
        controller_inputs = torch.cat(parts, dim=-1)
        if c.initial_read:  # step 0: the slots under the initial pointers, no decoder input
            rows = torch.arange(batch, device=memory.device).unsqueeze(1)
            step0 = torch.cat(
                [memory.new_zeros(batch, c.input_dim), memory[rows, start].flatten(1)], dim=-1
            )
            controller_inputs = torch.cat([step0.unsqueeze(1), controller_inputs], dim=1)
        initial = self._initial_controller_state(memory, lengths, given_state)
        states, last = self.controller(controller_inputs, initial.unsqueeze(0))
        return states[:, -num_steps:], last[0]

    def _validate(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        num_steps: int | None,
        inputs: Tensor | None,
        controller_state: Tensor | None,
    ) -> int:
        c = self.config
        if memory.dim() != 3 or memory.shape[-1] != c.memory_dim:
            raise ValueError(
                f"memory must be (batch, slots, {c.memory_dim}), got {tuple(memory.shape)}"
            )
        batch, num_slots, _ = memory.shape
        if memory_mask.shape != (batch, num_slots) or memory_mask.dtype != torch.bool:
            raise ValueError(
                f"memory_mask must be a bool tensor of shape {(batch, num_slots)}, "
                f"got {memory_mask.dtype} {tuple(memory_mask.shape)}"
            )
        if num_slots > 2**c.address_bits:
            needed = max(1, (num_slots - 1).bit_length())
            raise ValueError(
                f"memory has {num_slots} slots but address_bits={c.address_bits} gives only "
                f"{2**c.address_bits} addresses; use address_bits >= {needed}"
            )
        empty_rows = (~memory_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty_rows:
            raise ValueError(f"memory_mask has no valid slot in batch rows {empty_rows[:10]}")
        if (inputs is None) == (num_steps is None):
            raise ValueError("give exactly one of num_steps and inputs")
        if inputs is not None:
            if c.input_dim == 0:
                raise ValueError("this PANM has input_dim=0: decode with num_steps, not inputs")
            if inputs.dim() != 3 or inputs.shape[0] != batch or inputs.shape[2] != c.input_dim:
                raise ValueError(
                    f"inputs must be (batch={batch}, steps, {c.input_dim}), "
                    f"got {tuple(inputs.shape)}"
                )
            num_steps = inputs.shape[1]
        elif c.input_dim:
            raise ValueError(f"this PANM expects inputs of width {c.input_dim} at every step")
        if num_steps is None or num_steps < 1:
            raise ValueError(f"the number of decoding steps must be >= 1, got {num_steps}")
        if c.controller_init == "given":
            if controller_state is None or controller_state.shape != (batch, c.hidden_dim):
                raise ValueError(
                    f"controller_init='given' needs controller_state of shape "
                    f"{(batch, c.hidden_dim)}"
                )
        elif controller_state is not None:
            raise ValueError(
                f"controller_state was given but controller_init={c.controller_init!r}"
            )
        return num_steps

    def _base_address(self, base_address: Tensor | int | None, lengths: Tensor) -> Tensor:
        batch, device = lengths.shape[0], lengths.device
        if base_address is None:
            if self.training and self.config.base_sampling:
                return self.address_bank.sample_base(
                    batch, device, distribution=self.config.base_distribution, lengths=lengths
                )
            if not self.training and self.config.eval_base == "random":
                return self.address_bank.sample_base(batch, device)
            return torch.zeros(batch, dtype=torch.long, device=device)
        base = torch.as_tensor(base_address, dtype=torch.long, device=device)
        return base.expand(batch).remainder(self.address_bank.size)

    def _initial_controller_state(
        self, memory: Tensor, lengths: Tensor, given: Tensor | None
    ) -> Tensor:
        if self.controller_init is None:
            assert given is not None
            return given
        total = memory.sum(dim=1)  # padded slots are already zero
        if self.config.controller_init == "memory_mean":
            total = total / lengths.unsqueeze(1)
        return self.controller_init(total)

    def _with_decoys(
        self, memory: Tensor, memory_mask: Tensor, base: Tensor, lengths: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Appends `decoy_slots` slots per sequence: memory (B, L+k, D), address ids (B, L+k),
        mask (B, L+k). See `PANMConfig.decoy_slots`."""
        batch, num_slots, _ = memory.shape
        k, device, size = self.config.decoy_slots, memory.device, self.address_bank.size
        slot = (torch.rand(batch, k, device=device) * lengths.unsqueeze(1)).long()
        bit = torch.randint(0, self.config.address_bits, (batch, k), device=device)
        decoy_ids = ((base.unsqueeze(1) + slot) % size) ^ (1 << bit)
        outside = (decoy_ids - base.unsqueeze(1)) % size >= lengths.unsqueeze(1)
        shift = torch.randint(1, max(batch, 2), (1,), device=device)
        donor = (torch.arange(batch, device=device) + shift) % batch  # another sample (if any)
        donor_slot = torch.minimum(slot, lengths[donor].unsqueeze(1) - 1)
        decoy_memory = memory[donor.unsqueeze(1), donor_slot]
        real_ids = self.address_bank.indices(base, num_slots)
        return (
            torch.cat([memory, decoy_memory], dim=1),
            torch.cat([real_ids, decoy_ids], dim=1),
            torch.cat([memory_mask, outside], dim=1),
        )


def _commit(weights: Tensor) -> Tensor:
    """One-hot on the largest weight where it is above one half, else unchanged: (..., L).
    Invalid slots have weight 0, so a committed pointer is always on a valid slot."""
    top, slot = weights.max(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(weights).scatter_(-1, slot, 1.0)
    return torch.where(top > 0.5, one_hot, weights)


def _weighted_read(weights: Tensor, values: Tensor) -> Tensor:
    """sum_i weights[..., i] values[i] for every step and pointer.

    weights (B, T, P, L), values (B, L, X) -> (B, T, P, X).
    """
    batch, steps, pointers, slots = weights.shape
    flat = weights.reshape(batch, steps * pointers, slots).bmm(values)
    return flat.view(batch, steps, pointers, values.shape[-1])
