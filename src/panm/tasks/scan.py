"""SCAN (Lake & Baroni 2018): navigation commands to action sequences, generated from its grammar.

The grammar (``C`` is a command)::

    C -> S | S and S | S after S          S -> V | V twice | V thrice
    V -> U | D | T opposite R | T around R
    D -> T R                              T -> U | turn
    U -> jump | look | run | walk         R -> left | right

and its interpretation: ``walk`` -> I_WALK (likewise jump, look, run); ``x left`` -> I_TURN_LEFT x;
``turn left`` -> I_TURN_LEFT; ``x opposite left`` -> I_TURN_LEFT I_TURN_LEFT x; ``x around left``
-> (I_TURN_LEFT x) four times (for ``turn`` x is empty); ``x twice`` / ``x thrice`` -> x repeated
2 / 3 times; ``x1 and x2`` -> x1 x2; ``x1 after x2`` -> x2 x1. The grammar yields exactly the 20,910
pairs of the official ``tasks.txt`` (the tests check it).

Splits (all deterministic; pairs in every part are sorted by command string):

* ``length``: the official length split. Train = outputs of at most 22 actions, test = the rest
  (24 to 48 actions; no command has 23). ``train + valid`` is the official train file.
* ``cutoff-C`` (Newman et al. 2020; standard C in :data:`CUTOFFS`): train = outputs of at most C
  actions, test = the rest. ``cutoff-22`` equals ``length``.
* Validation (every generated split): ``len(train) // 20`` pairs (floor of 5 %) held out of the
  train pairs. The train pairs, sorted by command, are shuffled with ``random.Random(VALID_SEED)``;
  the first ones form the valid part, the others the train part.

Examples are JSON dicts ``{"command": "jump twice"}``, with target ``["I_JUMP", "I_JUMP"]``.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from panm.tasks.base import Batch, EncodedExample, Task, collate

PRIMITIVES: dict[str, str] = {"jump": "I_JUMP", "look": "I_LOOK", "run": "I_RUN", "walk": "I_WALK"}
TURNS: dict[str, str] = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
REPEATS: dict[str, int] = {"twice": 2, "thrice": 3}
CONJUNCTIONS: tuple[str, ...] = ("and", "after")
MODIFIERS: tuple[str, ...] = ("opposite", "around")
COMMAND_WORDS: tuple[str, ...] = tuple(
    sorted([*PRIMITIVES, "turn", *TURNS, *REPEATS, *CONJUNCTIONS, *MODIFIERS])
)
ACTIONS: tuple[str, ...] = tuple(sorted([*PRIMITIVES.values(), *TURNS.values()]))

CUTOFFS: tuple[int, ...] = (22, 24, 25, 26, 27, 28, 30, 32, 33, 36, 40)
SPLITS: tuple[str, ...] = ("length", *(f"cutoff-{c}" for c in CUTOFFS))
LENGTH_SPLIT_MAX = 22
VALID_SEED = 2018
PARTS: tuple[str, ...] = ("train", "valid", "test")

_WORD_ID: dict[str, int] = {w: i + 1 for i, w in enumerate(COMMAND_WORDS)}
_ACTION_ID: dict[str, int] = {a: i + 2 for i, a in enumerate(ACTIONS)}
_ID_ACTION: tuple[str, ...] = ("<EOS>", "<BOS>", *ACTIONS)
_LINE = re.compile(r"IN: (\S.*?) OUT: (\S.*)")


# --- grammar ------------------------------------------------------------------------------------


def _interpret_v(words: list[str]) -> list[str]:
    """Actions of a V phrase (``jump``, ``turn left``, ``walk around right``, ...)."""
    head, *rest = words
    if head != "turn" and head not in PRIMITIVES:
        raise ValueError(f"a phrase must start with turn/jump/look/run/walk, not {head!r}")
    act = [PRIMITIVES[head]] if head in PRIMITIVES else []
    if not rest:
        if head == "turn":
            raise ValueError("'turn' needs a direction (left or right)")
        return act
    if len(rest) > 2 or rest[-1] not in TURNS or (len(rest) == 2 and rest[0] not in MODIFIERS):
        raise ValueError(f"expected '{head} [opposite|around] left|right', not {' '.join(words)!r}")
    turn = TURNS[rest[-1]]
    if len(rest) == 1:
        return [turn, *act]
    if rest[0] == "opposite":
        return [turn, turn, *act]
    return [turn, *act] * 4


def _interpret_s(words: list[str]) -> list[str]:
    """Actions of an S phrase: a V phrase, optionally followed by twice/thrice."""
    if not words:
        raise ValueError("empty phrase")
    if words[-1] in REPEATS:
        if len(words) == 1:
            raise ValueError(f"{words[-1]!r} needs a phrase before it")
        return _interpret_v(words[:-1]) * REPEATS[words[-1]]
    return _interpret_v(words)


def interpret(command: str) -> list[str]:
    """The action words of a SCAN command; ValueError naming the problem if it is not one."""
    words = command.split()
    if not words:
        raise ValueError("empty command")
    for w in words:
        if w not in COMMAND_WORDS:
            raise ValueError(f"unknown word {w!r} in command {command!r}")
    conj = [i for i, w in enumerate(words) if w in CONJUNCTIONS]
    try:
        if len(conj) > 1:
            raise ValueError("at most one 'and'/'after' is allowed")
        if not conj:
            return _interpret_s(words)
        i = conj[0]
        first, second = _interpret_s(words[:i]), _interpret_s(words[i + 1 :])
        return first + second if words[i] == "and" else second + first
    except ValueError as e:
        raise ValueError(f"not a SCAN command: {command!r} ({e})") from None


@lru_cache(maxsize=1)
def _all_pairs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    heads = [*PRIMITIVES, "turn"]
    vs = list(PRIMITIVES)
    vs += [f"{h} {d}" for h in heads for d in TURNS]
    vs += [f"{h} {m} {d}" for h in heads for m in MODIFIERS for d in TURNS]
    ss = [*vs, *(f"{v} {r}" for v in vs for r in REPEATS)]
    cs = [*ss, *(f"{a} {c} {b}" for a in ss for c in CONJUNCTIONS for b in ss)]
    return tuple((c, tuple(interpret(c))) for c in sorted(cs))


def generate_scan() -> list[dict]:
    """All 20,910 SCAN pairs as ``{"command": str, "target": [action, ...]}``, sorted by command."""
    return [{"command": c, "target": list(a)} for c, a in _all_pairs()]


# --- splits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanSplit:
    """A SCAN split: lists of ``{"command", "target"}`` dicts (``valid`` may be empty)."""

    name: str
    train: list[dict]
    valid: list[dict]
    test: list[dict]


def _hold_out(name: str, train: list[dict], test: list[dict]) -> ScanSplit:
    order = list(range(len(train)))
    random.Random(VALID_SEED).shuffle(order)
    held = set(order[: len(train) // 20])
    return ScanSplit(
        name=name,
        train=[p for i, p in enumerate(train) if i not in held],
        valid=[p for i, p in enumerate(train) if i in held],
        test=test,
    )


def make_split(name: str) -> ScanSplit:
    """The generated split `name`: ``length`` or ``cutoff-C`` (C an integer, 1 <= C < 48)."""
    if name == "length":
        cut = LENGTH_SPLIT_MAX
    else:
        m = re.fullmatch(r"cutoff-(\d+)", name)
        if m is None or not 1 <= int(m.group(1)) < 48:
            raise ValueError(f"unknown SCAN split {name!r}; known: {', '.join(SPLITS)}")
        cut = int(m.group(1))
    pairs = generate_scan()
    train = [p for p in pairs if len(p["target"]) <= cut]
    test = [p for p in pairs if len(p["target"]) > cut]
    return _hold_out(name, train, test)


# --- official file format -----------------------------------------------------------------------


def read_scan_file(path: str | Path, check: bool = True) -> list[dict]:
    """Pairs of an official-format file (``IN: <command> OUT: <actions>`` per line), in file order.

    Blank lines are skipped; duplicates are kept. A malformed line raises ValueError naming the file
    and line number; so does, with `check`, a command outside the grammar or wrong actions.
    """
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _LINE.fullmatch(line.strip())
            if m is None:
                raise ValueError(
                    f"{path}:{lineno}: malformed line, expected 'IN: <command> OUT: <actions>': "
                    f"{line.rstrip()!r}"
                )
            command, target = " ".join(m.group(1).split()), m.group(2).split()
            if check:
                try:
                    expected = interpret(command)
                except ValueError as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from None
                if target != expected:
                    raise ValueError(f"{path}:{lineno}: wrong actions for {command!r}")
            pairs.append({"command": command, "target": target})
    return pairs


def write_scan_file(path: str | Path, pairs: list[dict]) -> None:
    """Writes pairs in the official format, atomically (a temp file beside it, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"IN: {p['command']} OUT: {' '.join(p['target'])}\n" for p in pairs)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_split(split: ScanSplit, directory: str | Path) -> None:
    """Writes DIR/train.txt, DIR/test.txt and, when the split has a valid part, DIR/valid.txt."""
    for part in PARTS:
        pairs = getattr(split, part)
        if part != "valid" or pairs:
            write_scan_file(Path(directory) / f"{part}.txt", pairs)


# --- task ---------------------------------------------------------------------------------------


class ScanTask(Task):
    """SCAN as a :class:`Task`: input ``{"command": str}``, target a list of action words.

    Ids: input field 0 is 0 = PAD, then :data:`COMMAND_WORDS`; output is 0 = EOS, 1 = BOS, then
    :data:`ACTIONS`. Encoded targets end with EOS. The data come from the generated split `split`,
    or, with `data_file`, from an official-format file used as the train part (no valid part; the
    test part is `test_file`, or else every grammar pair whose command is not in `data_file`).

    SCAN has no input-length knob, so ``default_train_lengths`` is (shortest, longest) output
    length of the train part and ``default_test_lengths`` the sorted distinct output lengths of the
    test part (for per-length reporting); ``batch`` ignores its ``lengths`` argument.
    """

    name = "scan"
    input_vocab_sizes = (len(COMMAND_WORDS) + 1,)
    output_vocab_size = len(ACTIONS) + 2
    eos_id = 0
    bos_id = 1

    def __init__(
        self,
        split: str = "length",
        data_file: str | Path | None = None,
        test_file: str | Path | None = None,
    ) -> None:
        if data_file is None:
            if test_file is not None:
                raise ValueError("test_file needs data_file")
            self.split = make_split(split)
        else:
            train = read_scan_file(data_file)
            if test_file is not None:
                test = read_scan_file(test_file)
            else:
                seen = {p["command"] for p in train}
                test = [p for p in generate_scan() if p["command"] not in seen]
            self.split = ScanSplit(name=str(data_file), train=train, valid=[], test=test)
        if not self.split.train:
            raise ValueError(f"SCAN split {self.split.name!r} has no training pairs")
        self._by_length: dict[int, list[dict]] = {}
        for part in (self.split.test, self.split.train):  # train last: it wins on shared lengths
            groups: dict[int, list[dict]] = {}
            for p in part:
                groups.setdefault(len(p["target"]), []).append(p)
            self._by_length.update(groups)
        train_lengths = [len(p["target"]) for p in self.split.train]
        self.default_train_lengths = (min(train_lengths), max(train_lengths))
        self.default_test_lengths = tuple(sorted({len(p["target"]) for p in self.split.test}))

    def examples(self, part: str) -> list[dict]:
        """The pairs of `part` ("train", "valid" or "test") as ``{"command", "target"}`` dicts."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        pairs = getattr(self.split, part)
        return [{"command": p["command"], "target": list(p["target"])} for p in pairs]

    def sample(self, rng: random.Random, length: int) -> dict:
        """A uniformly drawn example with `length` output actions, from the train part if it has
        that length, else from the test part; ValueError if neither has."""
        pool = self._by_length.get(length)
        if not pool:
            raise ValueError(f"SCAN split {self.split.name!r} has no output of {length} actions")
        return {"command": rng.choice(pool)["command"]}

    def batch(self, rng: random.Random, lengths: tuple[int, int], batch_size: int) -> Batch:
        """`batch_size` train examples drawn uniformly with replacement (`lengths` is ignored)."""
        train = self.split.train
        return collate([self._encode(rng.choice(train)["command"]) for _ in range(batch_size)])

    def target(self, example: dict) -> list:
        self.validate(example)
        return interpret(example["command"])

    def output_length(self, example: dict) -> int:
        """The number of actions of `example`'s target (the length SCAN results are reported by)."""
        return len(self.target(example))

    def validate(self, example: dict) -> None:
        if not isinstance(example, dict):
            raise ValueError(f"a SCAN example must be a dict, got {type(example).__name__}")
        command = example.get("command")
        if not isinstance(command, str):
            raise ValueError('a SCAN example needs a "command" string')
        interpret(command)

    def encode(self, example: dict) -> EncodedExample:
        self.validate(example)
        return self._encode(example["command"])

    def _encode(self, command: str) -> EncodedExample:
        src = [(_WORD_ID[w],) for w in command.split()]
        tgt = [_ACTION_ID[a] for a in interpret(command)] + [self.eos_id]
        return EncodedExample(src=src, tgt=tgt)

    def decode_output(self, ids: list[int]) -> list:
        """Action words up to the first EOS; a predicted BOS decodes as "<BOS>" (never correct)."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if not 0 <= i < self.output_vocab_size:
                raise ValueError(f"output id {i} out of range [0, {self.output_vocab_size})")
            out.append(_ID_ACTION[i])
        return out
