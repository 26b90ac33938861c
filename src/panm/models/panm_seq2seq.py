"""The complete PANM sequence-to-sequence model: embedding -> encoder -> PANM -> token logits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from torch import Tensor, nn

from panm.backbones.rnn import RNNEncoder
from panm.backbones.suffix_or import SuffixOrEncoder
from panm.backbones.transformer import TransformerDecoder, TransformerEncoder
from panm.memory.panm import PANM, PANMConfig, PANMOutput
from panm.models.base import (
    DecoderInput,
    DecodeStep,
    Seq2SeqConfig,
    Seq2SeqModel,
    TokenEmbedding,
    check_input_fields,
)

ENCODERS = ("gru", "lstm", "transformer", "suffix_or", "none")
DECODERS = ("none", "transformer")
MEMORY_SOURCES = ("encoder", "embedding", "sum")


@dataclass
class PANMSeq2SeqConfig(Seq2SeqConfig):
    """PANM over an encoder.

    embed_dim: width of token embeddings, encoder outputs and memory slots (default 128).
    encoder: "gru" / "lstm" (bidirectional, the paper's default), "transformer", "suffix_or"
        (`suffix_flags` learned flags per slot, each an OR over the slots ahead up to a
        learned reset: `panm.backbones.suffix_or`), or "none".
    encoder_layers: encoder depth (default 1).
    encoder_bidirectional: "gru" / "lstm" read both ways (the paper) or, when False, forward
        only: a slot's state then depends only on the slots up to it, so it does not change
        when the sequence grows after it.
    suffix_flags: the number of flags of the "suffix_or" encoder (default 4).
    memory_source: what the memory slots hold: "encoder" states, the token "embedding"s
        themselves (length-invariant: a slot's content does not drift as sequences grow), or
        their "sum".
    decoder: "none" (PANM's controller reads the decoder input directly) or "transformer": a
        causal Transformer decoder (`decoder_layers` layers, cross-attending to the memory)
        runs first and PANM's controller sits on its last layer, taking its states as the
        per-step input; the pointer values then feed the output (the paper's Transformer+PANM).
    transformer_heads, transformer_ff_dim, transformer_position, transformer_shared_layers: the
        Transformer encoder's and decoder's settings (position: see `panm.backbones.positions`;
        shared_layers: one layer's weights applied at every depth, as `TransformerConfig`'s).
    dropout: dropout inside the encoder.
    factored_reads: with memory_source="embedding", PANM applies every linear map of its reads
        (controller input, output MLP, Mode-2 query and keys) to the embedding table rather than
        to each read (`PANM.forward`'s `memory_tokens`): the same function up to float rounding,
        with a fraction of the arithmetic when the vocabulary is small. False: map the reads.
        Other memory sources always map the reads.
    mode2_key_fields: input fields whose embeddings alone make the Mode-2 keys (ID Sort's ids:
        (1,)); empty: the whole slot. With an ordinal field (`ordinal_fields`) and a constant
        Mode-2 query a slot's score is then monotone in that field's value by construction, so
        no other field can reorder two slots (docs/results.md, Appendix A, "ID Sort"). Needs
        token-embedding memory with factored_reads and Mode-2 heads.
    pointer_start_after: with panm.given_starts K >= 1, the field-0 input id after whose first
        occurrence in a row the last K Mode-1 pointers start (all on that slot): the start of
        the part of the input after a separator, e.g. binary_addition's second number, after
        "+" (id 6); a row without that id before its last slot is a ValueError. None: no
        given starts (needs panm.given_starts == 0).
    panm: the memory's settings. Its memory_dim, input_dim and output_dim are set from the
        fields above. With panm.controller_init == "given" the controller starts from a
        projection of the encoder's final state (the authors' code) instead of the memory sum.
    """

    embed_dim: int = 128
    encoder: str = "gru"
    encoder_layers: int = 1
    encoder_bidirectional: bool = True
    suffix_flags: int = 4
    memory_source: str = "encoder"
    decoder: str = "none"
    decoder_layers: int = 3
    transformer_heads: int = 4
    transformer_ff_dim: int = 256
    transformer_position: str = "sinusoidal"
    transformer_shared_layers: bool = False
    dropout: float = 0.0
    factored_reads: bool = True
    mode2_key_fields: tuple[int, ...] = ()
    pointer_start_after: int | None = None
    panm: PANMConfig = field(default_factory=PANMConfig)

    retired_fields: ClassVar[dict[str, tuple[Any, str]]] = {
        "decoder_logits": (False, "5204d49"),
        "encoder_reverse": (False, "74ce758"),
    }
    """Removed fields: name -> (the value that behaves as today, the last commit that has it);
    see `panm.pretrained.config_from_dict`. decoder_logits (the decoder's own logits added to
    PANM's) lowered SCAN's exact match (docs/scan.md, "Attempts at the stop"); encoder_reverse
    (a one-way GRU/LSTM read from the end) left binary_addition's pointers unlearned
    (docs/dev/chomsky-binary-addition-reverse-lstm)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.memory_source not in MEMORY_SOURCES:
            raise ValueError(
                f"memory_source must be one of {MEMORY_SOURCES}, got {self.memory_source!r}"
            )
        if self.transformer_shared_layers and "transformer" not in (self.encoder, self.decoder):
            raise ValueError("transformer_shared_layers needs a 'transformer' encoder or decoder")
        if not self.encoder_bidirectional and self.encoder not in ("gru", "lstm"):
            raise ValueError("encoder_bidirectional=False needs a 'gru' or 'lstm' encoder")
        uses_final_state = self.panm.controller_init == "given"
        if uses_final_state and self.encoder not in ("gru", "lstm"):
            raise ValueError("panm.controller_init='given' needs a 'gru' or 'lstm' encoder")
        if self.encoder == "none" and self.memory_source != "embedding":
            raise ValueError("encoder='none' needs memory_source='embedding'")
        if self.encoder != "none" and self.memory_source == "embedding" and not uses_final_state:
            raise ValueError(
                "memory_source='embedding' leaves the encoder unused; set encoder='none'"
            )
        if self.mode2_key_fields:
            self._check_mode2_key_fields()
        if (self.pointer_start_after is None) != (self.panm.given_starts == 0):
            raise ValueError("pointer_start_after and panm.given_starts >= 1 go together")
        marker, vocab = self.pointer_start_after, self.input_vocab_sizes[0]
        if marker is not None and (type(marker) is not int or not 0 < marker < vocab):
            raise ValueError(
                f"pointer_start_after must be an input id in 1..{vocab - 1}, got {marker!r}"
            )
        self.panm = replace(
            self.panm,
            memory_dim=self.embed_dim,
            output_dim=self.output_vocab_size,
            input_dim=(
                self.embed_dim
                if self.decoder == "transformer" or self.decoder_input == "previous_token"
                else 0
            ),
        )

    def transformer_stack(self) -> dict[str, Any]:
        """The settings a Transformer encoder or decoder stack takes, but its depth."""
        return dict(
            dim=self.embed_dim,
            heads=self.transformer_heads,
            ff_dim=self.transformer_ff_dim,
            dropout=self.dropout,
            position=self.transformer_position,
            shared_layers=self.transformer_shared_layers,
        )

    def _check_mode2_key_fields(self) -> None:
        check_input_fields("mode2_key_fields", self.input_vocab_sizes, self.mode2_key_fields)
        if self.memory_source != "embedding" or not self.factored_reads:
            raise ValueError("mode2_key_fields needs memory_source='embedding' and factored_reads")
        if self.panm.num_mode2 < 1:
            raise ValueError("mode2_key_fields needs Mode-2 heads (panm.num_mode2 >= 1)")


class PANMSeq2Seq(Seq2SeqModel):
    """Embeds the input slots, encodes them into memory, and decodes with PANM."""

    config_class = PANMSeq2SeqConfig
    model_type = "panm"

    def __init__(self, config: PANMSeq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.embedding = TokenEmbedding(config.input_vocab_sizes, dim, config.ordinal_fields)
        self.encoder = self._build_encoder(config)
        self.final_state_map = (
            nn.Linear(dim, config.panm.hidden_dim)
            if config.panm.controller_init == "given"
            else None
        )
        self.decoder_input = (
            DecoderInput(config.decoder_input, config.output_vocab_size, dim)
            if config.panm.input_dim
            else None
        )
        self.decoder = None
        if config.decoder == "transformer":
            self.decoder = TransformerDecoder(
                layers=config.decoder_layers, **config.transformer_stack()
            )
        self.memory = PANM(config.panm)
        # PANM's `key_rows` (V,): the embedding table rows of mode2_key_fields, made once
        key_rows = (
            self.embedding.field_rows(config.mode2_key_fields) if config.mode2_key_fields else None
        )
        self.register_buffer("key_rows", key_rows, persistent=False)

    @staticmethod
    def _build_encoder(config: PANMSeq2SeqConfig) -> nn.Module | None:
        if config.encoder in ("gru", "lstm"):
            return RNNEncoder(
                config.encoder,
                config.embed_dim,
                config.encoder_layers,
                config.encoder_bidirectional,
                config.dropout,
            )
        if config.encoder == "transformer":
            return TransformerEncoder(layers=config.encoder_layers, **config.transformer_stack())
        if config.encoder == "suffix_or":
            return SuffixOrEncoder(config.embed_dim, config.suffix_flags)
        return None

    def trace(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
        base_address: Tensor | int | None = None,
    ) -> PANMOutput:
        """The full PANM output (pointers, attention weights, ...) for a batch; see `forward`."""
        if (num_steps is None) == (tgt_in is None):
            raise ValueError("give exactly one of num_steps and tgt_in")
        memory, controller_state = self._encode(src, src_mask)
        inputs = None
        if self.decoder_input is not None:
            inputs = self.decoder_input(src.shape[0], num_steps, tgt_in)
            if self.decoder is not None:
                inputs = self.decoder(inputs, memory, src_mask, causal=True)
            num_steps = None
        elif tgt_in is not None:
            raise ValueError("this model has decoder_input='none': pass num_steps")
        return self.memory(
            memory,
            src_mask,
            num_steps=num_steps,
            inputs=inputs,
            base_address=base_address,
            controller_state=controller_state,
            memory_tokens=self._memory_tokens(src),
            key_rows=self.key_rows,
            start_slots=self._start_slots(src, src_mask),
        )

    def start_decoding(self, src: Tensor, src_mask: Tensor, num_steps: int) -> DecodeStep:
        """Cached decoding (see `Seq2SeqModel.start_decoding`): encodes once and plans PANM's
        pointers and reads for all steps at once (`PANM.plan`); each call then runs the
        Transformer decoder (with its key/value cache, if there is one) and PANM's controller
        over the new step only."""
        if self.decoder_input is None:
            raise ValueError("cached decoding needs decoder_input='previous_token'")
        memory, controller_state = self._encode(src, src_mask)
        cache = None if self.decoder is None else self.decoder.start(memory, src_mask, num_steps)
        plan = self.memory.plan(
            memory,
            src_mask,
            num_steps,
            controller_state=controller_state,
            memory_tokens=self._memory_tokens(src),
            key_rows=self.key_rows,
            start_slots=self._start_slots(src, src_mask),
        )
        decoder_input, decoder = self.decoder_input, self.decoder

        def step(tokens: Tensor) -> Tensor:
            inputs = decoder_input(src.shape[0], None, tokens)  # (B, 1, D)
            if decoder is not None and cache is not None:
                inputs = decoder.step(inputs, cache)
            return self.memory.decode(plan, inputs)[:, -1]

        return step

    def _start_slots(self, src: Tensor, src_mask: Tensor) -> Tensor | None:
        """PANM's start_slots for src (B, L, F): the slot after the first pointer_start_after
        of each row, for each of the panm.given_starts pointers (B, K); None without."""
        marker = self.config.pointer_start_after
        if marker is None:
            return None
        found = (src[..., 0] == marker) & src_mask
        after = found.long().argmax(dim=1) + 1  # the first occurrence's next slot
        if not bool(found.any(dim=1).all()):
            rows = (~found.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(
                f"input id {marker} (pointer_start_after) is missing in rows {rows[:10]}"
            )
        return after.unsqueeze(1).expand(-1, self.config.panm.given_starts)

    def _memory_tokens(self, src: Tensor) -> tuple[Tensor, Tensor] | None:
        """PANM's `memory_tokens` for src (B, L, F): the slots as rows of the embedding table,
        with factored_reads over token-embedding memory; else None (PANM maps the reads)."""
        if self.config.memory_source == "embedding" and self.config.factored_reads:
            return self.embedding.factors(src)
        return None

    def _encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """The memory slots (B, L, D) of src (B, L, F), and the controller's start (B, hidden)
        when controller_init is "given" (else None)."""
        embedded = self.embedding(src)
        memory, final_state = embedded, None
        if self.encoder is not None:
            if isinstance(self.encoder, RNNEncoder):
                encoded, final_state = self.encoder(embedded, src_mask)
            else:
                encoded = self.encoder(embedded, src_mask)
            if self.config.memory_source == "encoder":
                memory = encoded
            elif self.config.memory_source == "sum":
                memory = embedded + encoded
        controller_state = None
        if self.final_state_map is not None:
            controller_state = self.final_state_map(final_state)
        return memory, controller_state

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
    ) -> Tensor:
        """src (B, L, F), src_mask (B, L) -> logits (B, T, output_vocab_size)."""
        return self.trace(src, src_mask, num_steps=num_steps, tgt_in=tgt_in).logits
