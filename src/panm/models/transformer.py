"""Encoder-decoder Transformer with a choice of position encoding.

The decoder is causal in both decoding modes, so step t never depends on later steps, and
with decoder_input "none" the logits of a step do not depend on how many steps are decoded
(a batch decodes as many steps as its longest target needs); with randomized positions
(`random_positions`) this holds for a given draw of positions only.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from panm.backbones.positions import POSITION_KINDS, RANDOMIZABLE_KINDS
from panm.backbones.transformer import TransformerDecoder, TransformerEncoder
from panm.models.base import (
    DecoderInput,
    DecodeStep,
    Seq2SeqConfig,
    Seq2SeqModel,
    TokenEmbedding,
)


@dataclass
class TransformerConfig(Seq2SeqConfig):
    """Encoder-decoder Transformer (pre-LN).

    d_model: model width (default 128).
    num_heads: attention heads (default 4).
    encoder_layers, decoder_layers: layers of each stack (default 3 and 3).
    ff_dim: hidden width of the feed-forward blocks (default 256).
    dropout: on embeddings, attention weights and residual branches (default 0.1).
    position: "sinusoidal", "learned", "relative" (T5's bias, bidirectional buckets in both
        stacks), "t5" (T5's bias as T5 has it: unidirectional buckets in the causal decoder),
        "rope", "alibi" or "none" (NoPE), used by both stacks (default "sinusoidal").
    max_positions: longest sequence "learned" positions cover (default 512).
    random_positions: 0 (default) for positions 0, 1, ...; R > 0 for randomized positions
        (Ruoss et al. 2023): each forward pass of a stack, in training and evaluation, draws its
        positions as a sorted random subset of 0..R-1 (R at least the longest input or output;
        "sinusoidal", "relative", "t5", "rope" or "alibi" only).
    shared_layers: each stack applies one layer's weights encoder_layers / decoder_layers times
        (Universal Transformer weight sharing; default False).
    """

    d_model: int = 128
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    ff_dim: int = 256
    dropout: float = 0.1
    position: str = "sinusoidal"
    max_positions: int = 512
    random_positions: int = 0
    shared_layers: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by {self.num_heads} heads")
        if (self.d_model // self.num_heads) % 2:
            raise ValueError("d_model // num_heads must be even (rope and sinusoidal need pairs)")
        if min(self.encoder_layers, self.decoder_layers, self.ff_dim, self.max_positions) < 1:
            raise ValueError("layers, ff_dim and max_positions must be positive")
        if self.position not in POSITION_KINDS:
            raise ValueError(f"position must be one of {POSITION_KINDS}, got {self.position!r}")
        if self.random_positions < 0:
            raise ValueError(f"random_positions must be >= 0, got {self.random_positions}")
        if self.random_positions and self.position not in RANDOMIZABLE_KINDS:
            raise ValueError(
                f"random_positions needs position in {RANDOMIZABLE_KINDS}, got {self.position!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class TransformerSeq2Seq(Seq2SeqModel):
    """Embeds the input slots, encodes them, decodes with cross-attention, projects to logits.

    Decoder inputs are the previous tokens' embeddings ("previous_token") or, with
    decoder_input "none", a learned start vector then a learned step vector, so that the
    decoder queries carry nothing but their position.
    """

    config_class = TransformerConfig
    model_type = "transformer"

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.d_model
        stack = dict(
            dim=dim,
            heads=config.num_heads,
            ff_dim=config.ff_dim,
            dropout=config.dropout,
            position=config.position,
            max_len=config.max_positions,
            random_positions=config.random_positions,
            shared_layers=config.shared_layers,
        )
        self.embed = TokenEmbedding(config.input_vocab_sizes, dim, config.ordinal_fields)
        self.encoder = TransformerEncoder(layers=config.encoder_layers, **stack)
        self.decoder_input = DecoderInput(config.decoder_input, config.output_vocab_size, dim)
        self.decoder = TransformerDecoder(layers=config.decoder_layers, **stack)
        self.head = nn.Linear(dim, config.output_vocab_size)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
    ) -> Tensor:
        """src (B, L, F), src_mask (B, L) -> logits (B, T, output_vocab_size)."""
        inputs = self.decoder_input(src.shape[0], num_steps, tgt_in)  # (B, T, D)
        memory = self.encoder(self.embed(src), src_mask)
        return self.head(self.decoder(inputs, memory, src_mask, causal=True))

    def start_decoding(self, src: Tensor, src_mask: Tensor, num_steps: int) -> DecodeStep:
        """Cached decoding (see `Seq2SeqModel.start_decoding`): encodes once, then decodes
        one step per call with the decoder's key/value cache."""
        memory = self.encoder(self.embed(src), src_mask)
        cache = self.decoder.start(memory, src_mask, num_steps)

        def step(tokens: Tensor) -> Tensor:
            inputs = self.decoder_input(src.shape[0], None, tokens)  # (B, 1, D)
            return self.head(self.decoder.step(inputs, cache))[:, -1]

        return step
