"""Pointer Network: each decoding step points at an input slot and outputs that slot's token.

The output distribution over tokens is the pointer distribution over input slots, summed per
output token through `copy_map` (field-0 input id -> output id, or -1 for none). The model can
therefore only output tokens that occur in its input; it returns log-probabilities as logits:
logits = log(pointer mass per output token + 1e-9), so that cross entropy trains it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from panm.backbones.rnn import RNNEncoder
from panm.models.attention import ContentAttention
from panm.models.base import DecoderInput, Seq2SeqConfig, Seq2SeqModel, TokenEmbedding

EPS = 1e-9


@dataclass
class PointerConfig(Seq2SeqConfig):
    """Pointer Network.

    copy_map: for each field-0 input id, the output id of the same symbol or -1 (a task's
        `Task.copy_map()`); needed to build the model, which must be able to output something.
    hidden_dim: width of the input embeddings, of the bidirectional LSTM encoder outputs
        (hidden_dim // 2 per direction), of the decoder LSTM and of the additive pointer
        attention (default 128; must be even).
    dropout: on the embeddings and the decoder states (default 0.1).
    """

    copy_map: tuple[int, ...] = ()
    hidden_dim: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.copy_map and len(self.copy_map) != self.input_vocab_sizes[0]:
            raise ValueError(
                f"copy_map has {len(self.copy_map)} entries for an input vocabulary of "
                f"{self.input_vocab_sizes[0]}"
            )
        if any(not -1 <= i < self.output_vocab_size for i in self.copy_map):
            raise ValueError(f"copy_map ids must be -1 or output ids < {self.output_vocab_size}")
        if self.hidden_dim < 2 or self.hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even and positive, got {self.hidden_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class PointerSeq2Seq(Seq2SeqModel):
    """Bi-LSTM encoder; LSTM decoder whose h starts at the encoder's final hidden states (both
    directions) and c at zero; additive (Bahdanau) attention of each decoder state over the input
    slots is the pointer.
    """

    config_class = PointerConfig
    model_type = "pointer"
    copy_ids: Tensor

    def __init__(self, config: PointerConfig) -> None:
        super().__init__()
        if all(i < 0 for i in config.copy_map):
            raise ValueError(
                "a pointer model needs a copy_map with at least one input id mapped to an output "
                "id (pass the task's copy_map()); this task's outputs cannot be copied from inputs"
            )
        self.config = config
        dim = config.hidden_dim
        self.embed = TokenEmbedding(config.input_vocab_sizes, dim, config.ordinal_fields)
        self.encoder = RNNEncoder("lstm", dim, bidirectional=True)
        self.decoder_input = DecoderInput(config.decoder_input, config.output_vocab_size, dim)
        self.decoder = nn.LSTM(dim, dim, batch_first=True)
        self.pointer = ContentAttention("bahdanau", dim)
        self.dropout = nn.Dropout(config.dropout)
        self.register_buffer("copy_ids", torch.tensor(config.copy_map), persistent=False)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
    ) -> Tensor:
        """src (B, L, F), src_mask (B, L) -> log-probabilities (B, T, output_vocab_size)."""
        inputs = self.dropout(self.decoder_input(src.shape[0], num_steps, tgt_in))  # (B, T, D)
        memory, state = self.encoder(self.dropout(self.embed(src)), src_mask)
        states, _ = self.decoder(inputs, (state[None], torch.zeros_like(state)[None]))
        pointer = self.pointer.weights(self.dropout(states), self.pointer.keys(memory), src_mask)
        out_ids = self.copy_ids[src[..., 0]]  # (B, L), -1 where the input token has no output
        pointer = pointer * (out_ids >= 0)[:, None, :]
        mass = pointer.new_zeros(*pointer.shape[:2], self.config.output_vocab_size)
        mass.scatter_add_(2, out_ids.clamp(min=0)[:, None, :].expand_as(pointer), pointer)
        return torch.log(mass + EPS)
