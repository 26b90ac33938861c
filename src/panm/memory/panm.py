"""PANM: Pointer-Augmented Neural Memory over any encoder's memory.

Read top to bottom: the config, the output, then `PANM.forward`, which

1. gives every memory slot a binary address (`AddressBank`), with a random base in training;
2. optionally appends training-only *decoy* slots (see `PANMConfig.decoy_slots`);
3. moves the Mode-1 pointers over the addresses step by step (the Pointer Unit, which sees
   addresses only);
4. reads memory at the pointers' weights (Mode-1) and queries memory by content with those
   reads (Mode-2): steps 1-4 are `PANM.plan`, which needs no decoder input (over token
   memory, `memory_tokens`, it maps the reads without making them; see `_mapped_reads`);
5. runs the GRU controller over the reads and the optional decoder input, and maps
   [controller state, Mode-1 reads, Mode-2 reads] of every step (with output_initial_read,
   also the slots under the initial pointers; with output_previous_read, the step before's
   Mode-1 reads; with output_input, the step's decoder input) to outputs with an MLP
   (`PANM.decode`: all
   steps at once, or one at a time in cached generation).

Shapes: B batch, L memory slots, D memory width, T decoding steps, G Mode-1 pointers, H Mode-2
pointers, b address bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from panm.memory.addresses import MAX_BITS, AddressBank
from panm.memory.pointer_unit import POINTER_INPUTS, SIMILARITIES, PointerUnit
from panm.memory.recurrence import gru_run
from panm.memory.relational import RelationalAccess
from panm.pretrained import Pretrained

CONTROLLER_INITS = ("memory_sum", "memory_mean", "given")
EVAL_BASES = ("zero", "random", "carry")
EVAL_POINTERS = ("soft", "hard")
MODE2_QUERIES = ("reads", "constant")
MODE2_SELECTIONS = ("soft", "hard")
MODE2_KEYS = ("slot", "previous_slot")


@dataclass
class PANMConfig:
    """Configuration of the PANM memory, field by field (default in brackets).

    Why each option beyond the paper exists, and what it measured: docs/results.md
    ("PANMConfig options"); removed options: `retired_fields`.

    memory_dim: width D of the memory slots [128].
    output_dim: width of the output (the vocabulary size for a token decoder) [10].
    hidden_dim: width of the controller GRU and of the output MLP's hidden layer [128].
    input_dim: width E of the per-step decoder input; 0: no input, decode `num_steps` [0].
    address_bits: b; 2**b addresses, so at most 2**b slots; 1..62 [8].
    num_mode1: Mode-1 pointers G; pointer 0 starts on the first valid slot, pointer 1 on the
        last, further ones alternate [2].
    num_mode2: Mode-2 (content) pointers H; 0 disables Mode-2 [1].
    mode2_exclusion: each Mode-2 head avoids the slots it has already read (a sort by content;
        not in the paper) [False].
    mode2_query: "reads" (the paper: a projection of the Mode-1 reads) or "constant" (a learned
        query per head, the same at every step) ["reads"].
    mode2_selection: "soft" (the paper: the attention-weighted mix of slots) or "hard" (the top
        slot alone, in training too, with the softmax's gradient) ["soft"].
    mode2_tie_margin: with hard selection, a head reads the first slot whose score is within
        this margin of the best (equal keys in input order); 0: the best slot [0.0].
    mode2_decoys: whether Mode-2 also attends over the training-only decoy slots [True].
    mode2_keys: what a slot's Mode-2 key is made from: the "slot" itself (the paper) or the
        "previous_slot" in memory order (zero for the first slot), so that a head finds the
        slot that follows a content, as an induction head does ["slot"].
    pointer_dim: state width of each Pointer Unit GRU [64].
    key_dim: width of the address keys ("dot", "cosine") and of the Mode-2 keys [64].
    address_similarity: "dot" (the authors' code), "cosine" (the paper's text) or "bitwise"
        (every address bit must match; see `AddressAttention`) ["dot"].
    pointer_window: 0: the Pointer Unit GRU carries its state over all steps (the paper);
        K >= 1: each step reruns it from zero over the last K pointer values [0].
    pointer_inputs: with pointer_window K >= 1, "recent" (the last K pointer values) or
        "latest" (the latest one, K times) ["recent"].
    pointer_restart: K >= 1: a Mode-1 pointer whose move leaves the memory jumps back to its
        start slot or one of the K - 1 slots after it (a learned choice; see `PointerUnit`);
        needs address_similarity "bitwise"; 0: off [0].
    given_starts: K >= 1: the last K Mode-1 pointers start on slots the caller gives
        (`forward`'s start_slots), not at an end of memory: e.g. binary_addition's second
        number, after "+" (`PANMSeq2SeqConfig.pointer_start_after`); not with pointer_restart,
        whose restart slots are counted from the usual starts; 0: off [0].
    shared_moves: one Pointer Unit rule (GRU and query map) moves every Mode-1 pointer, instead
        of one per pointer: for pointers that all step the same way (binary_addition's two
        "+1" walks) [False].
    read_start: the Mode-1 pointers read the slots they start on at step 1 and move after each
        step (read, then move), instead of moving before each read [False].
    base_sampling: draw a uniform base address per sequence in training (else base 0) [True].
    carry_bases: with base_sampling, the fraction of training sequences whose base instead puts
        a carry into a uniformly chosen address bit inside the sequence
        (`AddressBank.sample_carry_base`): a uniform base gives the carries into high bits,
        which long test sequences need, to few short training sequences [0.0].
    eval_base: the base outside training: "zero" (the paper), "random" (uniform per sequence,
        one draw per call; a diagnostic) or "carry" (per sequence, one that puts a carry into a
        uniformly chosen address bit but the top one inside it, without wrapping around:
        `AddressBank.sample_carry_base`); validation's with `validation_bases` ["zero"].
    eval_pointers: Mode-1 pointers outside training: "soft" (the paper) or "hard" (a pointer
        whose largest weight is above one half reads that slot alone) ["soft"].
    decoy_slots: training-only slots per sequence, each with a real slot's address with one
        bit flipped and the content of another sample's slot [0].
    carry_decoy: the first decoy of each training sequence instead takes the address that a
        move onto the sequence's largest carry asks for when it drops that carry: the address
        with the most trailing zeros among slots 1..length-1, less its lowest 1 bit (a walk
        over 127 -> 128 gets a decoy at 0). Without it such a request lands on the nearest
        slot present, which in a short sequence is often the right one [False].
    controller_init: the controller's start: "memory_sum" (the paper: projected sum of valid
        slots), "memory_mean" or "given" (the caller's `controller_state`) ["memory_sum"].
    initial_read: before the first step the controller reads the slots under the initial
        pointers [False].
    output_initial_read: the output MLP also takes, at every step, the slots under the G
        initial Mode-1 pointers side by side (G * D more inputs) [False].
    output_previous_read: the output MLP also takes the Mode-1 reads of the step before (at
        step 0, the slots under the initial pointers; G * D more inputs) [False].
    output_input: the output MLP also takes the step's decoder input (input_dim more inputs;
        needs input_dim > 0) [False].
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
    mode2_keys: str = "slot"
    pointer_dim: int = 64
    key_dim: int = 64
    address_similarity: str = "dot"
    pointer_window: int = 0
    pointer_inputs: str = "recent"
    pointer_restart: int = 0
    given_starts: int = 0
    shared_moves: bool = False
    read_start: bool = False
    base_sampling: bool = True
    carry_bases: float = 0.0
    eval_base: str = "zero"
    eval_pointers: str = "soft"
    decoy_slots: int = 0
    carry_decoy: bool = False
    controller_init: str = "memory_sum"
    initial_read: bool = False
    output_initial_read: bool = False
    output_previous_read: bool = False
    output_input: bool = False

    retired_fields: ClassVar[dict[str, tuple[Any, str]]] = {
        "pointer_start": ("inside", "60b0d94"),
        "base_distribution": ("uniform", "60b0d94"),
        "controller_reads": (True, "60b0d94"),
    }
    """Removed fields: name -> (the value that behaves as today, the last commit that has it):
    a saved config that holds that value still loads (see `panm.pretrained.config_from_dict`)."""

    def __post_init__(self) -> None:
        choices = {
            "address_similarity": SIMILARITIES,
            "pointer_inputs": POINTER_INPUTS,
            "eval_base": EVAL_BASES,
            "eval_pointers": EVAL_POINTERS,
            "controller_init": CONTROLLER_INITS,
            "mode2_query": MODE2_QUERIES,
            "mode2_selection": MODE2_SELECTIONS,
            "mode2_keys": MODE2_KEYS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 1 <= self.address_bits <= MAX_BITS:
            raise ValueError(f"address_bits must be in 1..{MAX_BITS}, got {self.address_bits}")
        if self.pointer_inputs == "latest" and self.pointer_window == 0:
            raise ValueError("pointer_inputs='latest' needs pointer_window >= 1")
        if self.pointer_restart and self.address_similarity != "bitwise":
            raise ValueError("pointer_restart needs address_similarity='bitwise'")
        if not 0 <= self.given_starts <= self.num_mode1:
            raise ValueError(
                f"given_starts must be in 0..num_mode1 ({self.num_mode1}), got {self.given_starts}"
            )
        if self.given_starts and self.pointer_restart:
            raise ValueError("given_starts and pointer_restart cannot be combined")
        if not 0.0 <= self.carry_bases <= 1.0:
            raise ValueError(f"carry_bases must be in [0, 1], got {self.carry_bases}")
        if self.mode2_tie_margin < 0:
            raise ValueError(f"mode2_tie_margin must be >= 0, got {self.mode2_tie_margin}")
        if self.mode2_tie_margin and self.mode2_selection != "hard":
            raise ValueError("mode2_tie_margin needs mode2_selection='hard'")
        if self.mode2_keys == "previous_slot" and self.mode2_decoys and self.decoy_slots:
            raise ValueError(
                "mode2_keys='previous_slot' needs mode2_decoys=False: a decoy slot, drawn from "
                "another sample, has no predecessor"
            )
        if self.carry_decoy and not self.decoy_slots:
            raise ValueError("carry_decoy needs decoy_slots >= 1")
        if self.mode2_exclusion and self.num_mode2 == 0:
            raise ValueError("mode2_exclusion needs num_mode2 >= 1")
        if self.num_mode1 < 1:
            raise ValueError(f"num_mode1 must be at least 1, got {self.num_mode1}")
        for name in ("num_mode2", "decoy_slots", "input_dim", "pointer_window", "pointer_restart"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("memory_dim", "output_dim", "hidden_dim", "pointer_dim", "key_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for f in fields(self):  # e.g. `--set panm.initial_read=True` gives the string "True"
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be true or false, got {value!r}")


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


@dataclass
class PANMPlan:
    """Everything of a decoding but the controller, made by `PANM.plan`.

    The Mode-1 pointers never see memory contents, the controller or the decoder input, and
    Mode-2 is queried by the Mode-1 reads, so all of it runs over all steps at once before the
    first step; `PANM.decode` then runs the controller and the output MLP over the steps as
    their inputs come, all together (`PANM.forward`) or a step at a time (cached generation).

    reads: (B, T, (G + H) * D) the Mode-1 then Mode-2 reads of every step, then with
        output_initial_read the initial read (the slots under the initial pointers, G * D,
        the same at every step), then with output_previous_read the step before's Mode-1
        reads (G * D; the initial read at step 0); None over token memory (`memory_tokens`),
        whose plan holds the reads' linear maps instead:
    read_gates: (B, T, 3 * hidden_dim) the controller GRU's input gates from the Mode-1 reads
        (its W_ih over the reads, plus b_ih), token memory only.
    read_features: (B, T, hidden_dim) the output MLP's first layer over the Mode-1 and Mode-2
        reads and the optional initial and previous reads, plus its bias, token memory only.
    pointers, mode1_weights, mode2_weights, mode2_pointers, addresses: as in `PANMOutput`.
    controller_state: (B, hidden_dim) after the steps decoded so far (`steps_done`).
    """

    reads: Tensor | None
    pointers: Tensor
    mode1_weights: Tensor
    mode2_weights: Tensor
    mode2_pointers: Tensor
    addresses: Tensor
    controller_state: Tensor
    read_gates: Tensor | None = None
    read_features: Tensor | None = None
    steps_done: int = 0

    @property
    def num_steps(self) -> int:
        return self.mode1_weights.shape[1]


class PANM(nn.Module, Pretrained):
    """Pointer-Augmented Neural Memory decoder over a given memory (any encoder's output)."""

    config_class = PANMConfig
    model_type = "panm_memory"

    def __init__(self, config: PANMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.output_input and c.input_dim == 0:  # checked here: a model config sets input_dim
            raise ValueError("output_input needs a decoder input (input_dim > 0)")
        self.address_bank = AddressBank(c.address_bits)
        self.pointer_unit = PointerUnit(
            c.num_mode1,
            c.address_bits,
            c.pointer_dim,
            c.key_dim,
            c.address_similarity,
            window=c.pointer_window,
            inputs=c.pointer_inputs,
            restart=c.pointer_restart,
            shared=c.shared_moves,
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
        self.controller = nn.GRU(
            c.input_dim + c.num_mode1 * c.memory_dim, c.hidden_dim, batch_first=True
        )
        # The output MLP's inputs: [state, Mode-1 reads, Mode-2 reads, initial read (optional),
        # previous Mode-1 reads (optional), decoder input (optional)].
        features = c.hidden_dim + (c.num_mode1 + c.num_mode2) * c.memory_dim
        features += (c.output_initial_read + c.output_previous_read) * c.num_mode1 * c.memory_dim
        features += c.output_input * c.input_dim
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
        memory_tokens: tuple[Tensor, Tensor] | None = None,
        key_rows: Tensor | None = None,
        start_slots: Tensor | None = None,
    ) -> PANMOutput:
        """Decode T steps over `memory`.

        memory: (B, L, D) slots from any encoder. memory_mask: (B, L) bool, True on valid slots.
        The valid slots of a row must be one run: right padding ([T, T, T, F, F]), left padding
        ([F, F, T, T, T]) or both; a row with a hole or without a valid slot is a ValueError.
        Padding never changes a sample's result: its first valid slot has the base address and
        the next ones count up from it, pointer 0 starts on the first valid slot and pointer 1
        on the last, padded slots get weight exactly 0 and their content (even NaN) is ignored,
        so logits, pointers, the weights on valid slots and the addresses of valid slots equal
        those of the unpadded sequence alone.
        Give either `num_steps` (no decoder input; needs input_dim == 0) or `inputs` (B, T, E)
        (teacher forcing or any per-step input; needs input_dim == E).
        base_address: (B,) long or an int: the address of each row's first valid slot (default:
        random in training when base_sampling is on, random with eval_base="random", else 0).
        Random bases are drawn anew at every call: a caller that decodes one step at a time
        uses one `plan` for all steps (cached `Seq2SeqModel.generate`) or passes the same
        `base_address` to each call (uncached `generate` repeats the random state instead).
        controller_state: (B, hidden_dim), required when controller_init == "given".
        memory_tokens: optional (rows (B, L, F) long, table (V, D)) with memory[b, i] equal to
        table[rows[b, i]].sum(0) on valid slots (token embeddings): every linear map of the
        reads is then applied to the V rows of the table instead of to each read
        (`_mapped_reads`), the same function up to float rounding with far fewer multiply-adds
        when V is small.
        key_rows: with memory_tokens, an optional (V,) bool mask of the table rows that make
        the Mode-2 keys (a slot's key is the key map of its masked rows alone, e.g. of one
        input field, so what the other rows hold cannot change a slot's rank); None: all rows.
        start_slots: with given_starts K, (B, K) long: the slot (an index into memory's L
        slots, a valid one) each of the last K Mode-1 pointers starts on; else None.
        """
        num_steps = self._check_steps(memory, num_steps, inputs)
        plan = self.plan(
            memory,
            memory_mask,
            num_steps,
            base_address,
            controller_state,
            memory_tokens,
            key_rows,
            start_slots,
        )
        logits = self.decode(plan, inputs)
        return PANMOutput(
            logits=logits,
            pointers=plan.pointers,
            mode1_weights=plan.mode1_weights,
            mode2_weights=plan.mode2_weights,
            mode2_pointers=plan.mode2_pointers,
            addresses=plan.addresses,
            controller_state=plan.controller_state,
        )

    def plan(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        num_steps: int,
        base_address: Tensor | int | None = None,
        controller_state: Tensor | None = None,
        memory_tokens: tuple[Tensor, Tensor] | None = None,
        key_rows: Tensor | None = None,
        start_slots: Tensor | None = None,
    ) -> PANMPlan:
        """Everything of `num_steps` decoding steps but the controller (see `PANMPlan`); the
        arguments are `forward`'s. `decode` then runs the controller over the steps' inputs."""
        first = self._validate(memory, memory_mask, controller_state)
        if num_steps < 1:
            raise ValueError(f"the number of decoding steps must be >= 1, got {num_steps}")
        if memory_tokens is not None:
            _validate_tokens(memory, memory_tokens)
        if key_rows is not None:
            if memory_tokens is None or self.relational is None:
                raise ValueError("key_rows needs memory_tokens and Mode-2 heads (num_mode2 >= 1)")
            if key_rows.dtype != torch.bool or key_rows.shape != memory_tokens[1].shape[:1]:
                raise ValueError(
                    f"key_rows must be a bool mask of the {memory_tokens[1].shape[0]} table rows, "
                    f"got {key_rows.dtype} {tuple(key_rows.shape)}"
                )
        c = self.config
        batch, num_slots, _ = memory.shape
        lengths = memory_mask.sum(dim=1)
        _validate_start_slots(start_slots, memory_mask, c.given_starts)

        base = self._base_address(base_address, lengths)
        origin = (base - first) % self.address_bank.size  # the address of slot 0 of each row
        addresses = self.address_bank(origin, num_slots, memory.dtype)
        # Padded slots hold exact zeros, whatever the encoder left there (even NaN).
        memory = memory.masked_fill(~memory_mask.unsqueeze(-1), 0.0)
        slot_memory, slot_addresses, slot_mask = memory, addresses, memory_mask
        slot_rows = None
        if memory_tokens is not None:  # (B, L, V): how often each table row is in each slot
            rows, table = memory_tokens
            counts = memory_mask.unsqueeze(-1).expand(rows.shape).to(memory.dtype)
            slot_rows = memory.new_zeros(batch, num_slots, table.shape[0])
            slot_rows = slot_rows.scatter_add_(-1, rows, counts)
        if self.training and c.decoy_slots:
            slot_memory, slot_ids, slot_mask, slot_rows = self._with_decoys(
                memory, memory_mask, base, first, lengths, slot_rows
            )
            slot_addresses = self.address_bank.lookup(slot_ids, memory.dtype)

        # Only the pointers must run step by step: they never see memory or the controller,
        # so the reads and Mode-2 then run over all steps at once.
        start = self.pointer_unit.start_offsets(lengths)  # (B, G) offsets from the first slot
        if start_slots is not None:  # the last given_starts pointers start where told
            given = start_slots - first.unsqueeze(1)
            start = torch.cat([start[:, : c.num_mode1 - c.given_starts], given], dim=1)
        start_ids = (base.unsqueeze(1) + start) % self.address_bank.size
        start_pointer = self.address_bank.lookup(start_ids, memory.dtype)
        start_slots = first.unsqueeze(1) + start  # (B, G) slot indices of all G pointers
        hard = not self.training and c.eval_pointers == "hard"
        restart_slots = None
        if c.pointer_restart:
            offsets, valid = self.pointer_unit.restart_offsets(lengths)  # (B, G, K)
            restart_slots = (first.view(-1, 1, 1) + offsets, valid)
        w1, pointers = self.pointer_unit.walk(
            start_pointer, slot_addresses, slot_mask, num_steps, hard, restart_slots
        )  # (B, T, G, L'), (B, T, G, b)
        if c.read_start:  # step t reads where t moves took the pointers: 0 at step 1
            at_start = _start_weights(start_slots, slot_mask.shape[1], memory.dtype)
            w1 = torch.cat([at_start, w1[:, :-1]], dim=1)
            pointers = torch.cat([start_pointer.unsqueeze(1), pointers[:, :-1]], dim=1)
        mode2_mask = slot_mask
        if not c.mode2_decoys:  # decoys, if any, are the slots after the real ones
            real = torch.arange(slot_mask.shape[1], device=slot_mask.device) < num_slots
            mode2_mask = slot_mask & real
        reads = read_gates = read_features = None
        if memory_tokens is None:
            w2, reads = self._read(w1, slot_memory, mode2_mask, start_slots)
        else:
            assert slot_rows is not None
            w2, read_gates, read_features = self._map_reads(
                w1, slot_rows, memory_tokens[1], mode2_mask, start_slots, key_rows
            )
        return PANMPlan(
            reads=reads,
            read_gates=read_gates,
            read_features=read_features,
            pointers=pointers,
            mode1_weights=w1[..., :num_slots],
            mode2_weights=w2[..., :num_slots],
            mode2_pointers=_weighted_read(w2, slot_addresses),
            addresses=addresses,
            controller_state=self._initial_controller_state(
                memory,
                lengths,
                start_slots,
                controller_state,
                None if memory_tokens is None else (slot_rows, memory_tokens[1]),
            ),
        )

    def _read(
        self, w1: Tensor, slot_memory: Tensor, mode2_mask: Tensor, start_slots: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mode-1 reads at the weights w1 (B, T, G, L') and Mode-2 over slot_memory (B, L', D):
        the Mode-2 weights (B, T, H, L') and the reads (B, T, (G + H) * D), followed with
        output_initial_read by the slots under the initial pointers start_slots (B, G) at every
        step (G * D more), then with output_previous_read by the step before's Mode-1 reads
        (G * D more; those slots at step 0)."""
        batch, num_steps, _, num_slots = w1.shape
        value1 = _weighted_read(w1, slot_memory)  # (B, T, G, D): v_t = sum_i w_t[i] M[i]
        reads = [value1.flatten(2)]
        w2 = slot_memory.new_zeros(batch, num_steps, 0, num_slots)
        if self.relational is not None:
            memory_keys = self.relational.keys(self._key_content(slot_memory))
            w2 = self.relational(value1, memory_keys, mode2_mask)  # (B, T, H, L')
            reads.append(_weighted_read(w2, slot_memory).flatten(2))
        c = self.config
        if c.output_initial_read or c.output_previous_read:
            start_read = _slots_at(slot_memory, start_slots).unsqueeze(1)  # (B, 1, G * D)
            if c.output_initial_read:
                reads.append(start_read.expand(-1, num_steps, -1))
            if c.output_previous_read:
                reads.append(torch.cat([start_read, reads[0][:, :-1]], dim=1))
        return w2, torch.cat(reads, dim=-1)

    def _map_reads(
        self,
        w1: Tensor,
        slot_rows: Tensor,
        table: Tensor,
        mode2_mask: Tensor,
        start_slots: Tensor,
        key_rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`_read` over token memory, slot i = sum_v slot_rows[b, i, v] table[v] (slot_rows
        (B, L', V), table (V, D)), without making the reads: the Mode-2 weights (B, T, H, L'),
        and the reads' maps `PANMPlan.read_gates` (B, T, 3 * hidden) and `read_features`
        (B, T, hidden). The Mode-2 keys are the key map of the table rows, its queries the
        query map of the Mode-1 reads (`_mapped_reads`); with key_rows (V,) the keys are those of
        the masked rows alone. With output_initial_read, the initial
        read under start_slots (B, G) is mapped once per sequence and added at every step; with
        output_previous_read, the step before's Mode-1 reads are mapped too."""
        c = self.config
        batch, num_steps, _, num_slots = w1.shape
        w2 = w1.new_zeros(batch, num_steps, 0, num_slots)
        if self.relational is not None:
            access = self.relational
            key_map = (table @ access.key.weight.t()).t()  # (K, V)
            if key_rows is not None:
                key_map = key_map * key_rows.to(key_map.dtype)
            memory_keys = nn.functional.linear(
                self._key_content(slot_rows), key_map, access.key.bias
            )
            if isinstance(access.query, nn.Linear):
                query = _mapped_reads(w1, slot_rows, table, access.query.weight, access.query.bias)
            else:
                query = access.query.expand(batch, num_steps, -1)
            w2 = access.attend(query, memory_keys, mode2_mask)  # (B, T, H, L')
        gru = self.controller
        read_gates = _mapped_reads(
            w1, slot_rows, table, gru.weight_ih_l0[:, c.input_dim :], gru.bias_ih_l0
        )
        first_layer = self.output_head[0]
        reads_end = c.hidden_dim + (c.num_mode1 + c.num_mode2) * c.memory_dim
        read_features = _mapped_reads(
            torch.cat([w1, w2], dim=2),
            slot_rows,
            table,
            first_layer.weight[:, c.hidden_dim : reads_end],
            first_layer.bias,
        )
        if c.output_initial_read or c.output_previous_read:
            start = _start_weights(start_slots, num_slots, w1.dtype)  # (B, 1, G, L')
            width = c.num_mode1 * c.memory_dim
            if c.output_initial_read:
                read_features = read_features + _mapped_reads(
                    start, slot_rows, table, first_layer.weight[:, reads_end : reads_end + width]
                )  # (B, 1, hidden) broadcast over the steps
                reads_end += width
            if c.output_previous_read:
                previous = torch.cat([start, w1[:, :-1]], dim=1)  # (B, T, G, L')
                read_features = read_features + _mapped_reads(
                    previous, slot_rows, table, first_layer.weight[:, reads_end : reads_end + width]
                )
        return w2, read_gates, read_features

    def _key_content(self, slots: Tensor) -> Tensor:
        """What the Mode-2 keys are made from, (B, L', X) -> (B, L', X): the slots themselves,
        or with mode2_keys="previous_slot" each slot's predecessor (zeros for slot 0; a padded
        slot holds zeros, so the first valid slot of a left-padded row gets zeros too)."""
        if self.config.mode2_keys == "slot":
            return slots
        return nn.functional.pad(slots, (0, 0, 1, 0))[:, :-1]

    def decode(self, plan: PANMPlan, inputs: Tensor | None = None) -> Tensor:
        """Runs the controller over the plan's next steps and returns their logits (B, n,
        output_dim): the n steps of inputs (B, n, E), or without inputs all the steps left.
        Advances plan.steps_done and plan.controller_state."""
        done = plan.steps_done
        end = plan.num_steps if inputs is None else done + inputs.shape[1]
        if end > plan.num_steps:
            raise ValueError(f"the plan has {plan.num_steps} steps, not {end}")
        if plan.reads is None:
            return self._decode_mapped(plan, done, end, inputs)
        reads = plan.reads[:, done:end]  # (B, n, (G + H) * D)
        mode1_reads = reads[..., : self.config.num_mode1 * self.config.memory_dim]
        controller_inputs = (
            mode1_reads if inputs is None else torch.cat([inputs, mode1_reads], dim=-1)
        )
        states, last = self.controller(controller_inputs, plan.controller_state.unsqueeze(0))
        plan.steps_done, plan.controller_state = end, last[0]
        features = [states, reads, inputs] if self.config.output_input else [states, reads]
        return self.output_head(torch.cat(features, dim=-1))

    def _decode_mapped(self, plan: PANMPlan, done: int, end: int, inputs: Tensor | None) -> Tensor:
        """`decode` of steps done..end-1 from the reads' maps of a token-memory plan: the
        controller GRU runs over its input gates (`_gru_over_gates`, with the decoder input's
        share added), and the output MLP's first layer adds the reads' share to the states'.
        All of it runs step-major, (n, B, .), the layout the plan's maps have in memory."""
        assert plan.read_gates is not None and plan.read_features is not None
        c, gru = self.config, self.controller
        gates = plan.read_gates[:, done:end].transpose(0, 1)  # (n, B, 3 * hidden)
        if inputs is not None:
            gates = gates + inputs.transpose(0, 1) @ gru.weight_ih_l0[:, : c.input_dim].t()
        states, last = _gru_over_gates(
            gates, plan.controller_state, gru.weight_hh_l0, gru.bias_hh_l0
        )  # (n, B, hidden)
        plan.steps_done, plan.controller_state = end, last
        first_layer, activation, last_layer = self.output_head
        read_features = plan.read_features[:, done:end].transpose(0, 1)  # (n, B, hidden)
        if c.output_input:
            assert inputs is not None  # output_input needs input_dim > 0, so inputs are given
            input_weight = first_layer.weight[:, -c.input_dim :]
            read_features = read_features + inputs.transpose(0, 1) @ input_weight.t()
        hidden = torch.addmm(
            read_features.reshape(-1, c.hidden_dim),
            states.reshape(-1, c.hidden_dim),
            first_layer.weight[:, : c.hidden_dim].t(),
        )  # the first layer over [states, reads]
        logits = last_layer(activation(hidden)).view(end - done, -1, c.output_dim)
        return logits.transpose(0, 1)

    def _check_steps(self, memory: Tensor, num_steps: int | None, inputs: Tensor | None) -> int:
        """Checks `forward`'s num_steps and inputs; returns the number of steps."""
        c = self.config
        if (inputs is None) == (num_steps is None):
            raise ValueError("give exactly one of num_steps and inputs")
        if inputs is not None:
            if c.input_dim == 0:
                raise ValueError("this PANM has input_dim=0: decode with num_steps, not inputs")
            batch = memory.shape[0]
            if inputs.dim() != 3 or inputs.shape[0] != batch or inputs.shape[2] != c.input_dim:
                raise ValueError(
                    f"inputs must be (batch={batch}, steps, {c.input_dim}), "
                    f"got {tuple(inputs.shape)}"
                )
            return inputs.shape[1]
        if c.input_dim:
            raise ValueError(f"this PANM expects inputs of width {c.input_dim} at every step")
        assert num_steps is not None
        return num_steps

    def _validate(
        self, memory: Tensor, memory_mask: Tensor, controller_state: Tensor | None
    ) -> Tensor:
        """Checks memory, mask and controller state; returns each row's first valid slot (B,)."""
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
        first = _first_of_one_run(memory_mask)
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
        return first

    def _base_address(self, base_address: Tensor | int | None, lengths: Tensor) -> Tensor:
        """The base address (B,) long: the address of each row's first valid slot, for rows
        of `lengths` (B,) valid slots."""
        batch, device = lengths.shape[0], lengths.device
        if base_address is None:
            if self.training and self.config.base_sampling:
                base = self.address_bank.sample_base(batch, device)
                if self.config.carry_bases:
                    carry = self.address_bank.sample_carry_base(lengths)
                    chosen = torch.rand(batch, device=device) < self.config.carry_bases
                    base = torch.where(chosen, carry, base)
                return base
            if not self.training and self.config.eval_base == "random":
                return self.address_bank.sample_base(batch, device)
            if not self.training and self.config.eval_base == "carry":
                return self.address_bank.sample_carry_base(lengths, wrap=False)
            return torch.zeros(batch, dtype=torch.long, device=device)
        base = torch.as_tensor(base_address, dtype=torch.long, device=device)
        return base.expand(batch).remainder(self.address_bank.size)

    def _initial_controller_state(
        self,
        memory: Tensor,
        lengths: Tensor,
        start_slots: Tensor,
        given: Tensor | None,
        tokens: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """The controller's state (B, hidden) before the first step; with initial_read, after
        its read of the slots under the initial pointers start_slots (B, G), no decoder input.
        tokens: (slot_rows (B, L', V), table (V, D)) of token memory (see `_map_reads`): the
        read is then mapped on the table."""
        c = self.config
        if self.controller_init is None:
            assert given is not None
            state = given
        else:
            total = memory.sum(dim=1)  # padded slots are already zero
            if c.controller_init == "memory_mean":
                total = total / lengths.unsqueeze(1)
            state = self.controller_init(total)
        if c.initial_read and tokens is not None:
            slot_rows, table = tokens
            step0 = _start_weights(start_slots, slot_rows.shape[1], memory.dtype)
            gru = self.controller
            gates = _mapped_reads(
                step0,
                slot_rows,
                table,
                gru.weight_ih_l0[:, c.input_dim :],
                gru.bias_ih_l0,
            )  # (B, 1, 3 * hidden)
            gates = gates.transpose(0, 1)
            state = _gru_over_gates(gates, state, gru.weight_hh_l0, gru.bias_hh_l0)[1]
        elif c.initial_read:
            step0 = torch.cat(
                [memory.new_zeros(len(memory), c.input_dim), _slots_at(memory, start_slots)],
                dim=-1,
            )
            state = self.controller(step0.unsqueeze(1), state.unsqueeze(0))[1][0]
        return state

    def _with_decoys(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        base: Tensor,
        first: Tensor,
        lengths: Tensor,
        slot_rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Appends `decoy_slots` slots per sequence: memory (B, L+k, D), address ids (B, L+k),
        mask (B, L+k), and with `slot_rows` (B, L, V) (token memory, see `plan`) the decoys'
        table rows too (B, L+k, V), else None. Slots are counted from each row's first valid
        slot (`first`, (B,)), so padding on either side draws the same decoys. See
        `PANMConfig.decoy_slots`."""
        batch, num_slots, _ = memory.shape
        k, device, size = self.config.decoy_slots, memory.device, self.address_bank.size
        slot = (torch.rand(batch, k, device=device) * lengths.unsqueeze(1)).long()
        bit = torch.randint(0, self.config.address_bits, (batch, k), device=device)
        decoy_ids = ((base.unsqueeze(1) + slot) % size) ^ (1 << bit)
        if self.config.carry_decoy:
            decoy_ids[:, 0] = self._carry_decoy(base, lengths, decoy_ids[:, 0])
        outside = (decoy_ids - base.unsqueeze(1)) % size >= lengths.unsqueeze(1)
        shift = torch.randint(1, max(batch, 2), (1,), device=device)
        donor = (torch.arange(batch, device=device) + shift) % batch  # another sample (if any)
        donor_slot = first[donor].unsqueeze(1) + torch.minimum(
            slot, lengths[donor].unsqueeze(1) - 1
        )
        decoy_memory = memory[donor.unsqueeze(1), donor_slot]
        real_ids = self.address_bank.indices((base - first) % size, num_slots)
        rows = None
        if slot_rows is not None:
            rows = torch.cat([slot_rows, slot_rows[donor.unsqueeze(1), donor_slot]], dim=1)
        return (
            torch.cat([memory, decoy_memory], dim=1),
            torch.cat([real_ids, decoy_ids], dim=1),
            torch.cat([memory_mask, outside], dim=1),
            rows,
        )

    def _carry_decoy(self, base: Tensor, lengths: Tensor, fallback: Tensor) -> Tensor:
        """Per sequence (B,): the address a move onto its largest carry asks for without that
        carry (see `PANMConfig.carry_decoy`); `fallback` (B,) where no move crosses one (one
        slot, or only the wrap-around onto address 0)."""
        size = self.address_bank.size
        offsets = torch.arange(1, max(int(lengths.max()), 2), device=base.device)
        addresses = (base.unsqueeze(1) + offsets) % size  # slots 1..L-1, (B, L-1)
        lowest_bit = addresses & -addresses  # 0 for address 0
        lowest_bit = lowest_bit.masked_fill(offsets >= lengths.unsqueeze(1), 0)
        carry, at = lowest_bit.max(dim=1)
        target = addresses.gather(1, at.unsqueeze(1)).squeeze(1)
        return torch.where(carry > 0, target - carry, fallback)


def _validate_tokens(memory: Tensor, memory_tokens: tuple[Tensor, Tensor]) -> None:
    """Checks `forward`'s memory_tokens against memory (B, L, D)."""
    rows, table = memory_tokens
    batch, num_slots, dim = memory.shape
    if rows.dim() != 3 or rows.shape[:2] != (batch, num_slots) or rows.dtype != torch.long:
        raise ValueError(
            f"memory_tokens rows must be long (batch, slots, fields) = ({batch}, {num_slots}, F), "
            f"got {rows.dtype} {tuple(rows.shape)}"
        )
    if table.dim() != 2 or table.shape[1] != dim:
        raise ValueError(f"memory_tokens table must be (rows, {dim}), got {tuple(table.shape)}")


def _compiling() -> bool:
    """Whether torch.compile is tracing (False on torch < 2.3, which cannot tell)."""
    return getattr(torch.compiler, "is_compiling", lambda: False)()


def _validate_start_slots(start_slots: Tensor | None, mask: Tensor, given_starts: int) -> None:
    """Checks `forward`'s start_slots against the memory mask (B, L) and given_starts."""
    if start_slots is None:
        if given_starts:
            raise ValueError(f"given_starts={given_starts} needs start_slots (B, {given_starts})")
        return
    if not given_starts:
        raise ValueError("start_slots was given but given_starts=0")
    batch, num_slots = mask.shape
    if start_slots.shape != (batch, given_starts) or start_slots.dtype != torch.long:
        raise ValueError(
            f"start_slots must be long ({batch}, {given_starts}), "
            f"got {start_slots.dtype} {tuple(start_slots.shape)}"
        )
    inside = (start_slots >= 0) & (start_slots < num_slots)
    valid = inside & mask.gather(1, start_slots.clamp(0, num_slots - 1))
    if not _compiling() and not bool(valid.all()):
        rows = (~valid).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"start_slots of batch rows {rows[:10]} are not valid slots")


def _first_of_one_run(mask: Tensor) -> Tensor:
    """The first valid slot of each row (B,) long, after checking (in eager mode) that the
    valid slots of every row of `mask` (B, L) form one run (right, left or both-sided padding)."""
    lengths = mask.sum(dim=1)
    first = mask.long().argmax(dim=1)  # the first True (0 for a row without one)
    positions = torch.arange(mask.shape[1], device=mask.device)
    run = (positions >= first.unsqueeze(1)) & (positions < (first + lengths).unsqueeze(1))
    empty, holes = lengths == 0, (run != mask).any(dim=1)
    # A compiled model skips the check: reading it on the host waits for the device and splits
    # the graph. Eager calls, which include every evaluation, still check; so does torch < 2.3,
    # which has no torch.compiler.is_compiling.
    if not _compiling() and bool((empty | holes).any()):
        empty_rows = empty.nonzero().flatten().tolist()
        if empty_rows:
            raise ValueError(f"memory_mask has no valid slot in batch rows {empty_rows[:10]}")
        rows = holes.nonzero().flatten().tolist()
        raise ValueError(
            f"memory_mask rows {rows[:10]} have a hole: the valid slots of a row must be one run "
            "(right padding [T, T, F], left padding [F, T, T] or both), e.g. row "
            f"{rows[0]} is {mask[rows[0]].int().tolist()[:32]}"
        )
    return first


def _slots_at(memory: Tensor, slots: Tensor) -> Tensor:
    """The slots (B, G) of memory (B, L, D) side by side: (B, G * D)."""
    rows = torch.arange(memory.shape[0], device=memory.device).unsqueeze(1)
    return memory[rows, slots].flatten(1)


def _start_weights(slots: Tensor, num_slots: int, dtype: torch.dtype) -> Tensor:
    """One step of read weights on the slots (B, G) alone, for `_mapped_reads`: (B, 1, G, L)."""
    return nn.functional.one_hot(slots, num_slots).to(dtype).unsqueeze(1)


def _weighted_read(weights: Tensor, values: Tensor) -> Tensor:
    """sum_i weights[..., i] values[i] for every step and pointer.

    weights (B, T, P, L), values (B, L, X) -> (B, T, P, X).
    """
    batch, steps, pointers, slots = weights.shape
    flat = weights.reshape(batch, steps * pointers, slots).bmm(values)
    return flat.view(batch, steps, pointers, values.shape[-1])


def _mapped_reads(
    weights: Tensor,
    slot_rows: Tensor,
    table: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
) -> Tensor:
    """A linear map of the reads of token memory, computed on the table rather than the reads.

    weights (B, T, P, L'), slot_rows (B, L', V), table (V, D), weight (out, P * D) over the P
    reads side by side, optional bias (out,) -> (B, T, out), equal up to float rounding to
    linear(_weighted_read(weights, slot_rows @ table).flatten(2), weight, bias). With
    W (sum_i w[i] M[i]) = sum_v (sum_i w[i] slot_rows[i, v]) (W table[v]), the weights are
    summed per table row (B T P L' V multiply-adds) and the map applied to the V rows once,
    instead of making the reads (B T P L' D) and mapping each of them (B T P D out).
    The result is step-major in memory (a (B, T, out) view of a (T, B, out) tensor), the
    layout in which the controller and the output MLP run over it (`PANM._decode_mapped`).
    """
    batch, steps, reads, slots = weights.shape
    vocab, dim = table.shape
    per_row = weights.reshape(batch, steps * reads, slots).bmm(slot_rows)  # (B, T P, V)
    per_row = per_row.view(batch, steps, reads * vocab).transpose(0, 1).reshape(-1, reads * vocab)
    # the map of every read applied to every table row: (P V, out)
    table_maps = torch.cat([table @ part.t() for part in weight.split(dim, dim=1)])
    out = per_row @ table_maps if bias is None else torch.addmm(bias, per_row, table_maps)
    return out.view(steps, batch, -1).transpose(0, 1)


def _gru_over_gates(
    gates: Tensor, state: Tensor, weight_hh: Tensor, bias_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """`nn.GRU` (one layer) from its input gates already computed, W_ih x_t + b_ih, step-major
    (T, B, 3H), and the initial state (B, H): the states (T, B, H) and the last state (B, H)."""
    states = gru_run(
        gates.unsqueeze(1).unbind(0),
        state.unsqueeze(0),
        weight_hh.t().unsqueeze(0),
        bias_hh.view(1, 1, -1),
    )
    return torch.cat(states), states[-1][0]


def panm_memories(model: nn.Module) -> list[PANM]:
    """The PANM modules in `model`; ValueError if there is none."""
    memories = [m for m in model.modules() if isinstance(m, PANM)]
    if not memories:
        raise ValueError(f"{type(model).__name__} has no PANM memory")
    return memories


@contextmanager
def validation_bases(model: nn.Module, kind: str, seed: int) -> Iterator[None]:
    """Within the block, every PANM in `model` decodes outside training at the base addresses
    of `kind` ("random" or "carry", see `PANMConfig.eval_base`), drawn from the torch RNG
    seeded with `seed`: the same calls in the same order get the same bases. On exit each
    PANM's eval_base and the global RNG (CPU, and CUDA where the model is) are as before.
    ValueError if `model` holds no PANM (`panm_memories`).

    Why: at base 0 the short sequences of training never put a pointer across the address
    carries that long test sequences cross (a walk over 40 slots from 0 stays below 64), so
    validating at base 0 cannot tell a checkpoint that carries from one that does not
    (docs/chomsky.md, "Choosing the checkpoint")."""
    if kind not in EVAL_BASES[1:]:
        raise ValueError(f"validation bases must be one of {EVAL_BASES[1:]}, got {kind!r}")
    memories = panm_memories(model)
    saved = [m.config.eval_base for m in memories]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices):
        torch.manual_seed(seed)
        for memory in memories:
            memory.config.eval_base = kind
        try:
            yield
        finally:
            for memory, base in zip(memories, saved, strict=True):
                memory.config.eval_base = base
