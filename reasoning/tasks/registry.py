"""The one place that maps a task name to its class; generic code asks here."""
from __future__ import annotations

from typing import Any

from reasoning.tasks.base import Task
from reasoning.tasks.config import TASK_NAMES, TaskConfig


def make_task(config: TaskConfig | str) -> Task:
    """The task of `config` (a TaskConfig, or a bare name with default settings)."""
    if isinstance(config, str):
        config = TaskConfig(name=config)
    cls = _classes()[config.name]
    return cls(config)


def _classes() -> dict[str, Any]:
    from reasoning.tasks.countdown import CountdownTask
    from reasoning.tasks.custom import CustomTask
    from reasoning.tasks.math import MathTask
    from reasoning.tasks.wordmath import WordMathTask

    classes = {"countdown": CountdownTask, "math": MathTask, "custom": CustomTask, "wordmath": WordMathTask}
    assert tuple(classes) == TASK_NAMES
    return classes
