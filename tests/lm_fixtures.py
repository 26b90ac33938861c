"""Tiny random causal LMs (Llama and GPT-2) with a character tokenizer, built in code: the LM
path's tests run offline and fast on them."""

from __future__ import annotations

import string
from pathlib import Path


def save_tiny_lm(directory: Path, architecture: str) -> Path:
    """Writes a random 2-layer `architecture` ("llama" or "gpt2") LM and its tokenizer."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    characters = string.ascii_letters + string.digits + string.punctuation
    vocab = {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(characters)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    if architecture == "llama":
        config = LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=0,
        )
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(
            vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=4, n_positions=512, pad_token_id=0
        )
        model = GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory
