"""The benchmark tasks, by name: the six algorithmic tasks and SCAN.

>>> task = get_task("copy", num_symbols=10)
>>> task.target({"seq": [3, 1, 4]})
[3, 1, 4]
"""

from __future__ import annotations

from panm.tasks.algorithmic import ALGORITHMIC_TASKS
from panm.tasks.base import Batch, EncodedExample, Task, collate

TASK_NAMES: tuple[str, ...] = (*ALGORITHMIC_TASKS, "scan")
"""Every task name `get_task` accepts."""

__all__ = ["TASK_NAMES", "Batch", "EncodedExample", "Task", "collate", "get_task"]


def get_task(name: str, **kwargs: object) -> Task:
    """The task called `name`, constructed with `kwargs` (e.g. num_symbols=10).

    Raises ValueError for an unknown name. SCAN is imported only when asked for.
    """
    if name in ALGORITHMIC_TASKS:
        return ALGORITHMIC_TASKS[name](**kwargs)  # type: ignore[arg-type]
    if name == "scan":
        from panm.tasks.scan import ScanTask

        return ScanTask(**kwargs)
    raise ValueError(f"unknown task {name!r}; choose from: {', '.join(TASK_NAMES)}")
