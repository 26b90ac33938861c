"""Examples as JSON lines: generating, reading (validated, with line numbers) and writing them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from panm.evaluation import fresh_examples
from panm.pretrained import atomic_write
from panm.tasks.base import Task


def generate_examples(task: Task, length: int, count: int, seed: int = 0) -> list[dict]:
    """`count` examples of `length`, each with its "target" added."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if length < task.min_length():
        raise ValueError(f"{task.name} needs length >= {task.min_length()}, got {length}")
    return [{**e, "target": task.target(e)} for e in fresh_examples(task, length, count, seed)]


def read_jsonl(path: str | os.PathLike, task: Task) -> list[dict]:
    """Reads and validates one example per non-empty line; errors name the line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: malformed JSON: {error.msg}") from error
            if not isinstance(example, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            try:
                task.validate(example)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from error
            examples.append(example)
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def format_jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Writes all rows or nothing (atomic replace)."""
    text = format_jsonl(rows)
    atomic_write(Path(path), lambda p: p.write_text(text, encoding="utf-8"))
