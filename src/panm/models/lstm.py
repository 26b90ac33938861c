"""LSTM encoder-decoder without attention, and the decoder input shared by all baselines.

The encoder reads the real input slots only (packed sequences) and its final (h, c) initialises
the decoder, so everything the decoder knows about the input passes through one state vector.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from panm.models.base import DecoderInput, Seq2SeqConfig, Seq2SeqModel, TokenEmbedding


@dataclass
class LSTMConfig(Seq2SeqConfig):
    """LSTM encoder-decoder.

    hidden_dim: width of the input embeddings and of both LSTMs (default 128).
    num_layers: layers of each LSTM (default 1).
    dropout: on the embeddings, between LSTM layers and before the output layer (default 0.1).
    """

    hidden_dim: int = 128
    num_layers: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dim < 1 or self.num_layers < 1:
            raise ValueError("hidden_dim and num_layers must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LSTMSeq2Seq(Seq2SeqModel):
    """Encoder LSTM -> final (h, c) -> decoder LSTM -> Linear to output logits."""

    config_class = LSTMConfig
    model_type = "lstm"

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        dim, layers = config.hidden_dim, config.num_layers
        rnn_dropout = config.dropout if layers > 1 else 0.0
        self.embed = TokenEmbedding(config.input_vocab_sizes, dim, config.ordinal_fields)
        self.decoder_input = DecoderInput(config.decoder_input, config.output_vocab_size, dim)
        self.encoder = nn.LSTM(dim, dim, layers, batch_first=True, dropout=rnn_dropout)
        self.decoder = nn.LSTM(dim, dim, layers, batch_first=True, dropout=rnn_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(dim, config.output_vocab_size)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
    ) -> Tensor:
        """src (B, L, F), src_mask (B, L) -> logits (B, T, output_vocab_size)."""
        inputs = self.dropout(self.decoder_input(src.shape[0], num_steps, tgt_in))
        lengths = src_mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(
            self.dropout(self.embed(src)), lengths, batch_first=True, enforce_sorted=False
        )
        _, state = self.encoder(packed)  # (h, c), each (layers, B, dim), at each real last slot
        outputs, _ = self.decoder(inputs, state)
        return self.head(self.dropout(outputs))
