"""Bidirectional RNN encoder + GRU decoder with content-based attention (Luong or Bahdanau).

Shapes: B batch, L source slots, T decoding steps, D hidden width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from panm.backbones.rnn import RNNEncoder
from panm.models.base import DecoderInput, Seq2SeqConfig, Seq2SeqModel, TokenEmbedding

ATTENTION_KINDS = ("luong", "bahdanau")


class ContentAttention(nn.Module):
    """Attention by content of a query over memory slots.

    "luong" (general): score(q, m_j) = q . (W m_j).
    "bahdanau" (additive): score(q, m_j) = v . tanh(W_q q + W_m m_j).
    The memory projection does not depend on the query: compute `keys(memory)` once per sequence.
    """

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {kind!r}")
        self.kind = kind
        self.memory_proj = nn.Linear(dim, dim, bias=kind == "bahdanau")
        if kind == "bahdanau":
            self.query_proj = nn.Linear(dim, dim, bias=False)
            self.score = nn.Linear(dim, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """memory (B, L, D) -> keys (B, L, D)."""
        return self.memory_proj(memory)

    def weights(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """query (B, T, D), keys (B, L, D), mask (B, L) bool -> weights (B, T, L), 0 on padding."""
        if self.kind == "luong":
            scores = query @ keys.transpose(1, 2)
        else:
            hidden = torch.tanh(self.query_proj(query)[:, :, None] + keys[:, None])  # (B,T,L,D)
            scores = self.score(hidden).squeeze(-1)
        scores = torch.where(mask[:, None, :], scores, torch.finfo(scores.dtype).min)
        return scores.softmax(dim=-1)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        """query (B, T, D), keys and memory (B, L, D), mask (B, L) -> context (B, T, D)."""
        return self.weights(query, keys, mask) @ memory


@dataclass
class AttentionConfig(Seq2SeqConfig):
    """Attentional RNN encoder-decoder.

    hidden_dim: width of the input embeddings, of the encoder outputs (hidden_dim // 2 per
        direction) and of the decoder GRU (default 128; must be even).
    cell: encoder cell, "gru" or "lstm" (default "gru"); the decoder is always a GRU.
    attention: "luong" (general score on the new decoder state; the decoder GRU runs over all
        steps at once) or "bahdanau" (additive score on the previous state; the context is fed
        into the GRU step by step) (default "luong").
    dropout: on the embeddings and before the output layer (default 0.1).
    """

    hidden_dim: int = 128
    cell: str = "gru"
    attention: str = "luong"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dim < 2 or self.hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even and positive, got {self.hidden_dim}")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {self.cell!r}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class AttentionSeq2Seq(Seq2SeqModel):
    """Bi-RNN encoder; GRU decoder initialised by the encoder's final states; per step the
    output is Linear(tanh(W [decoder state; attention context])).
    """

    config_class = AttentionConfig
    model_type = "attention"

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_dim
        self.embed = TokenEmbedding(config.input_vocab_sizes, dim, config.ordinal_fields)
        self.encoder = RNNEncoder(config.cell, dim, bidirectional=True)
        self.decoder_input = DecoderInput(config.decoder_input, config.output_vocab_size, dim)
        self.attention = ContentAttention(config.attention, dim)
        if config.attention == "luong":
            self.decoder: nn.Module = nn.GRU(dim, dim, batch_first=True)
        else:
            self.decoder = nn.GRUCell(2 * dim, dim)
        self.combine = nn.Linear(2 * dim, dim)
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
        inputs = self.dropout(self.decoder_input(src.shape[0], num_steps, tgt_in))  # (B, T, D)
        memory, state = self.encoder(self.dropout(self.embed(src)), src_mask)
        keys = self.attention.keys(memory)
        if self.config.attention == "luong":
            states, _ = self.decoder(inputs, state[None])
            contexts = self.attention(states, keys, memory, src_mask)
        else:
            step_states, step_contexts = [], []
            for t in range(inputs.shape[1]):
                context = self.attention(state[:, None], keys, memory, src_mask)[:, 0]
                state = self.decoder(torch.cat([inputs[:, t], context], dim=-1), state)
                step_states.append(state)
                step_contexts.append(context)
            states, contexts = torch.stack(step_states, 1), torch.stack(step_contexts, 1)
        features = torch.tanh(self.combine(torch.cat([states, contexts], dim=-1)))
        return self.head(self.dropout(features))
