"""The benchmark tasks, by name: the six algorithmic tasks, the Chomsky-hierarchy tasks
(`panm.tasks.chomsky`) and SCAN.

>>> task = get_task("copy", num_symbols=10)
>>> task.target({"seq": [3, 1, 4]})
[3, 1, 4]
"""

from __future__ import annotations

import inspect

from panm.tasks.algorithmic import ALGORITHMIC_TASKS
from panm.tasks.base import Batch, EncodedExample, Task, collate
from panm.tasks.chomsky import CHOMSKY_TASKS

TASK_NAMES: tuple[str, ...] = (*ALGORITHMIC_TASKS, *CHOMSKY_TASKS, "scan")
"""Every task name `get_task` accepts."""

__all__ = ["TASK_NAMES", "Batch", "EncodedExample", "Task", "collate", "get_task"]


def get_task(name: str, **kwargs: object) -> Task:
    """The task called `name`, constructed with `kwargs` (e.g. num_symbols=10).

    Raises ValueError for an unknown name or option. SCAN is imported only when asked for.
    """
    if name in ALGORITHMIC_TASKS:
        task_class: type[Task] = ALGORITHMIC_TASKS[name]
    elif name in CHOMSKY_TASKS:
        task_class = CHOMSKY_TASKS[name]
    elif name == "scan":
        from panm.tasks.scan import ScanTask

        task_class = ScanTask
    else:
        raise ValueError(f"unknown task {name!r}; choose from: {', '.join(TASK_NAMES)}")
    known = inspect.signature(task_class).parameters
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {name} option(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}"
        )
    return task_class(**kwargs)  # type: ignore[arg-type]
