"""Default training recipes: what `panm train --task T --model M` does with no other flags.

Kept apart from the library code (as in torchtune): a recipe is data, a `TrainConfig`.
"""

from __future__ import annotations

from panm.models.registry import LM_MODEL_NAMES
from panm.tasks.algorithmic import NUM_SPECIALS
from panm.tasks.chomsky import BinaryAdditionTask
from panm.training import TrainConfig

# The PANM design that extrapolates (docs/results.md), on which every PANM recipe below builds
# (the LM path and a task without a recipe of its own take it as it is): memory slots
# hold token embeddings, address attention matches every address bit, training adds decoy slots,
# the controller reads the initial pointers' slots before step 1 and starts from the mean (not
# the sum) of memory, the Pointer Unit computes each move from the latest pointer alone (3 GRU
# steps deep, so it can neither drift with the step count nor make a first move special), and
# outside training a pointer that has committed to a slot reads that slot alone (no mixing of two
# slots where the attention is not sharp).
PANM_EXTRAPOLATING = {
    "encoder": "none",
    "memory_source": "embedding",
    "panm.address_similarity": "bitwise",
    "panm.decoy_slots": 8,
    "panm.initial_read": True,
    "panm.controller_init": "memory_mean",
    "panm.pointer_window": 3,
    "panm.pointer_inputs": "latest",
    "panm.eval_pointers": "hard",
}
# One recipe for the four tasks whose answers are slots read in an order set by positions or by
# a content match (Copy, Reverse, Mix, Dynamic Recall; chosen on development runs: docs/results.md,
# Appendix A, "One recipe for more tasks?"): the design above, plus
# - the output reads what it answers instead of the controller carrying it: the slots under the
#   initial pointers at every step (`output_initial_read`: Mix's op, which a GRU state driven
#   by 40-80 more reads forgets) and the step before's Mode-1 reads (`output_previous_read`: a
#   pointer moves before it reads, so Copy's and Reverse's answer, the slot a pointer starts on
#   and then each slot it leaves, is the read of the step before); the controller no longer
#   reads the initial slots (`initial_read` off), as no answer needs them in its state;
# - the Mode-2 head keys every slot by the slot before it (`mode2_keys="previous_slot"`) and
#   reads the top slot alone: Dynamic Recall answers with the token after the query's *first*
#   occurrence, and the slots after all occurrences score alike, so hard selection with a
#   margin of 0.001 (float rounding) reads the first of them; it skips the decoys, which have
#   no predecessor. (Its former memory, a forward GRU's states, knew "first" from a state that
#   faded past the training positions: 88.8-93.0% at 88.) Copy, Reverse and Mix do not need
#   Mode-2 (Copy's ablation without it is exact), but a hard read stays one slot's content at
#   any length where a soft one averages more slots as memory grows, and Mix seed 1 fitted its
#   training lengths only with it (with the soft read its pointer 0 learned to move two slots).
POINTER_TASKS = {
    "panm.initial_read": False,
    "panm.output_initial_read": True,
    "panm.output_previous_read": True,
    "panm.mode2_keys": "previous_slot",
    "panm.mode2_selection": "hard",
    "panm.mode2_tie_margin": 0.001,
    "panm.mode2_decoys": False,
}
# The sorting tasks read memory in key order with one Mode-2 head: a learned constant query
# scores each slot by its content, the head reads the best slot alone and never again (a
# selection sort), and it searches the real slots only (a decoy holds another sample's item);
# priority sort reads slots whose scores are within 1 of the best in input order, its ties;
# id sort embeds its ids as an ordinal field and keys Mode-2 on the ids alone, so a slot's
# score is monotone in its id for any weights and its token cannot reorder two slots (learned
# id by id, 9-19 of the 255 neighbouring pairs stayed in the wrong order: 1.3-18% at 88).
SORT_BY_CONTENT = {
    "panm.mode2_query": "constant",
    "panm.mode2_selection": "hard",
    "panm.mode2_exclusion": True,
    "panm.mode2_decoys": False,
}
ID_FIELD = 1  # id sort's slots are (token, id)
FORWARD_GRU_MEMORY = {"encoder": "gru", "memory_source": "encoder", "encoder_bidirectional": False}
# The Chomsky-hierarchy tasks (docs/chomsky.md) take one recipe per family, chosen from the task
# definitions (none on their final test set):
# - reverse_string, duplicate_string, odds_first output input tokens in an order set by
#   positions alone (a reverse, a copy twice, two stride-2 passes): Copy and Reverse's recipe,
#   POINTER_TASKS. First chosen as the extrapolating design alone (Copy's recipe when they were
#   chosen); a development run of reverse_string with it (20,000 steps on lengths 1-40) was
#   exact to 250 and 0% at 400 and 490, where a pointer missed a borrow across nine address
#   bits; with POINTER_TASKS it was exact at every development length to 490 (docs/chomsky.md);
# - bucket_sort is a sort by content: the sorting tasks' selection sort (equal tokens are
#   interchangeable, so it needs no rule for ties), over ordinal token embeddings (as id sort's
#   ids: a head's score is then monotone in the token for any weights) with two Mode-2 heads.
#   Its first protocol run (one head, free embeddings) fitted 25% of its training lengths: the
#   head had learned the order 2, 3, 0, 4, 1; with ordinal tokens, a head read them in
#   descending order. A hard read's gradient does not reverse the order a head starts with, and
#   each head's direction is set by its initialization, so with two heads one reads ascending
#   unless both start descending (development runs, docs/chomsky.md);
# - the others answer from what came before a slot (a stack's state, a carry, a pair of copies,
#   a running count): a forward GRU's states as memory (dynamic recall's recipe when these were
#   chosen), whose slot states summarise the prefix.
# All of them test up to 500 slots (+ 8 decoys), beyond the 256 addresses of 8 bits: 10 bits.
CHOMSKY_ADDRESSES = {"panm.address_bits": 10}
# - duplicate_string and odds_first read the input in a second pass: a pointer that walks off
#   the end restarts (`pointer_restart`) on its start slot (duplicate_string) or on the start
#   or the slot after it, a learned choice (odds_first's second pass starts on the second
#   slot). Without it no pointer could come back (a Pointer Unit sees only addresses), and
#   neither task was learned; duplicate_string with the two choices learned more slowly in a
#   development run (docs/chomsky.md).
# - both train half their sequences across a carry into a uniformly chosen address bit
#   (`carry_bases`): with uniform bases alone, duplicate_string's move onto a multiple of 64 (a
#   carry across six bits) was never learned by two runs in 20,000 steps, and every test
#   length above 64 needs it; with carry bases a development run made every such move by
#   step 8,500; odds_first learned its carries late without them (the carry onto 256 after
#   step 14,000 in one run) and by step 7,000 with them (with beta2 = 0.95, below; exact at
#   every development length to 490; docs/chomsky.md, "Carry bases").
CARRY_BASES = {"panm.carry_bases": 0.5}
SECOND_PASS = {
    "duplicate_string": {"panm.pointer_restart": 1, **CARRY_BASES},
    "odds_first": {"panm.pointer_restart": 2, **CARRY_BASES},
}
# - binary_addition adds the numbers digit by digit, lowest first: pointer 0 walks the first
#   number from the first slot, pointer 1 the second from the slot after "+" (`given_starts`
#   with `pointer_start_after`), and both read their start slots at step 1 (`read_start`), so
#   step t reads digit t of both numbers; the controller (a GRU) keeps the carry and whether each
#   number has ended (the first at "+", the second at the task's end marker). No Mode-2 head:
#   no answer is found by content. The walk crosses the same address carries as the
#   second-pass tasks' and trains as they do (carry bases here, their training below). Chosen
#   from the task's definition. Both pointers move by one rule (`shared_moves`): in the run
#   before it (seed 0, commit a617796), pointer 0 walked every training length exactly by step
#   4,500 but pointer 1, with a rule of its own, still stopped at moves with a carry across
#   three or more address bits (onto slots 8 and 24) at step 10,000, validation 35% exact.
#   Its first run with the prefix tasks' recipe (a forward GRU's
#   states as memory) was at 18.8% exact on its training lengths after 6,332 steps; a first
#   try at a learned start (a query scored against each slot's predecessor, a hard choice
#   with the softmax's gradient) moved its query toward the slot after the first 0, away from
#   "+", in 1,000 steps (docs/chomsky.md, "binary_addition"): the start is now given.
#   Each slot also holds suffix-OR flags (`encoder="suffix_or"`, added to its embedding): the
#   answer drops the sum's high zeros, so the terminator needs "no 1 left in either number",
#   which no digit read so far says. The run before them (seed 0, commit 2730b13) knew it by
#   counting the 1s read against the share of 1s in its start state and stopped early past
#   the training lengths (67 of 70 failures at 60); with the flags a development run (seed 10)
#   no longer counted and was exact at development lengths 41-100 by step 11,500; an LSTM
#   reading from the end instead gave slot 0 a summary of the input and the pointers never
#   walked (docs/chomsky.md, "binary_addition").
BINARY_ADDITION = {
    **CHOMSKY_ADDRESSES,
    **CARRY_BASES,
    "encoder": "suffix_or",
    "memory_source": "sum",
    "pointer_start_after": NUM_SPECIALS + BinaryAdditionTask.PLUS,
    "panm.given_starts": 1,
    "panm.read_start": True,
    "panm.shared_moves": True,
    "panm.initial_read": False,
    "panm.num_mode2": 0,
}
CHOMSKY_PREFIX_TASKS = (
    "stack_manipulation",
    "missing_duplicate_string",
    "even_pairs",
    "modular_arithmetic",
    "parity_check",
    "cycle_navigation",
)
PANM_TASK_RECIPES = {
    **{key: POINTER_TASKS for key in ("copy", "reverse", "mix", "dynamic_recall")},
    "priority_sort": {**SORT_BY_CONTENT, "panm.mode2_tie_margin": 1.0},
    "id_sort": {**SORT_BY_CONTENT, "ordinal_fields": (ID_FIELD,), "mode2_key_fields": (ID_FIELD,)},
    "reverse_string": {**POINTER_TASKS, **CHOMSKY_ADDRESSES},
    **{
        key: {**POINTER_TASKS, **CHOMSKY_ADDRESSES, **restart}
        for key, restart in SECOND_PASS.items()
    },
    "bucket_sort": {
        **SORT_BY_CONTENT,
        **CHOMSKY_ADDRESSES,
        "ordinal_fields": (0,),
        "panm.num_mode2": 2,
    },
    "binary_addition": BINARY_ADDITION,
    **{key: {**FORWARD_GRU_MEMORY, **CHOMSKY_ADDRESSES} for key in CHOMSKY_PREFIX_TASKS},
}
"""Each task's changes to PANM_EXTRAPOLATING; a task not listed (SCAN, a user's own task) gets
PANM_EXTRAPOLATING alone."""

# The issue-5 protocol: at most 15 minutes of CPU training per run (whichever of steps and
# minutes ends first), validation every 500 steps.
STEPS, MINUTES, EVAL_EVERY = 20_000, 15.0, 500
# Per-task training changes for PANM: id sort must learn the order of its 256 ids from the pairs
# that meet in one training sequence. A batch of 2,048 instead of 64 orders them much better in
# the same minutes (each step's gradient averages 32 times more pairs; the steps are slower, so it
# validates every 50), and half the training sequences draw their ids from a window of 2 x length
# consecutive ids (`close_ids`): ids that differ by 1 or 2 form 3.6 pairs in a test sequence of
# 22 but 0.7 in a training sequence of 10, and those windows let training compare them often
# (docs/results.md, "The sorting tasks").
# The second-pass tasks skip the update of a gradient spike (`skip_gradient_spikes`): two
# odds_first protocol runs that had fitted their training lengths collapsed to a guess; replayed,
# one collapse came right after spikes in the Pointer Unit's gradient (docs/chomsky.md,
# "Gradient spikes").
# duplicate_string starts on short sequences (`length_warmup`: at most 10, growing to 40 by step
# 6,000): on lengths 1-40 from the start no run fitted them (validation <= 10.6% exact in 5,500
# steps: a "+1" unsure of a high bit looks like the end of the input and restarts the pointer);
# with the warmup a development run was at 98% by step 3,500 (docs/chomsky.md). odds_first
# fitted its lengths without it. binary_addition takes it too: its first protocol run with this
# recipe but the warmup (seed 0) was still at a guess after 4,500 steps (validation 9.4% exact,
# loss 0.57; both pointers spread over many slots, no "+1" learned; docs/chomsky.md).
# Both validate at base addresses that put a carry into a random address bit inside each
# validation sequence (`valid_base="carry"`): at base 0 no validation sequence of lengths 1-40
# reaches address 64, so the checkpoint rule could not see a pointer fail to carry; two
# odds_first runs (one validated at base 0, one at uniform random bases, where errors that no
# test at base 0 meets outweighed the few carries) chose checkpoints that failed the carry onto
# 256 (0% at 300 and 500) while their last checkpoints were exact at every base and development
# length; validated at carry bases, the second would have preferred its last (docs/chomsky.md,
# "Choosing the checkpoint"). Decided on development data; scored on seeds not run before.
# Both also take Adam's second-moment decay down to 0.95 (`adam_beta2`): a run of each task
# collapsed for good with 0.999 right after moderate gradients that the spike guard let through
# (odds_first at step 5,285, duplicate_string at 5,039); replayed from a checkpoint before the
# collapse with the run's own batches, each collapsed again with 0.999 and not with 0.95
# (docs/chomsky.md: odds_first's "Gradient spikes", duplicate_string's "A collapse").
SECOND_PASS_TRAINING = {"skip_gradient_spikes": 10.0, "valid_base": "carry", "adam_beta2": 0.95}
PANM_TASK_TRAINING = {
    "id_sort": {"batch_size": 2048, "eval_every": 50, "task_options": {"close_ids": 0.5}},
    "duplicate_string": {**SECOND_PASS_TRAINING, "length_warmup": (10, 6000)},
    "odds_first": SECOND_PASS_TRAINING,
    "binary_addition": {**SECOND_PASS_TRAINING, "length_warmup": (10, 6000)},
}


# The language-model path (`lm`, `lm+panm`; docs/lm.md): the LM frozen, so its states are
# computed once per example of a fixed fine-tuning set of 10,000 (one LM forward each, about 7
# minutes on one CPU thread for SmolLM2-135M, spread over the first steps); the budget is steps,
# the same for both models. With 2,000 examples one Reverse run (seed 2) learned the set by heart
# instead of its pointers (its validation loss rose from step 4,000 while the training loss fell).
# 12,000 steps, not 6,000: at 6,000 the Copy run of seed 2 still walked one pointer one slot off at
# length 88; the same run trained to 12,000 steps is exact there on the development test set
# (docs/lm.md). Once the states are cached a step costs about 55 ms, so the extra steps add about
# 5 minutes to a run.
# Validation decodes with the LM at every check, so it is small and less frequent. lm+panm takes
# PANM's settings from the extrapolating design above (its memory is the LM's input embeddings,
# which, like panm's token-embedding memory, do not change with the prompt's length).
LM_TRAINING = {
    "steps": 12_000,
    "minutes": None,
    "batch_size": 64,
    "train_examples": 10_000,
    "valid_count": 100,
    "eval_every": 1000,
}
LM_PANM = {k: v for k, v in PANM_EXTRAPOLATING.items() if k.startswith("panm.")}


def default_train_config(task: str, model: str) -> TrainConfig:
    """The documented default recipe for `model` on `task`."""
    overrides, training = {}, {}
    if model == "panm":
        overrides = {**PANM_EXTRAPOLATING, **PANM_TASK_RECIPES.get(task, {})}
        training = PANM_TASK_TRAINING.get(task, {})
    if model in LM_MODEL_NAMES:
        overrides = LM_PANM if model == "lm+panm" else {}
        training = LM_TRAINING
    return TrainConfig(
        task=task,
        model=model,
        model_overrides=overrides,
        **{"steps": STEPS, "minutes": MINUTES, "eval_every": EVAL_EVERY, **training},
    )
