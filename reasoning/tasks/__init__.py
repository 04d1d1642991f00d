"""Tasks: where problems come from, how one becomes a prompt, how an output is scored.

`make_task(config.task)` is the only way generic code reaches a task. Built in:
countdown (reasoning/tasks/countdown.py), math (math.py), custom (custom.py). The
interface is `Task` in base.py; prompts (raw or chat template) are built in prompts.py.
"""
from reasoning.tasks.base import Task, problem_json, problem_record
from reasoning.tasks.config import TASK_NAMES, TaskConfig
from reasoning.tasks.prompts import TaskError
from reasoning.tasks.registry import make_task

__all__ = ["TASK_NAMES", "Task", "TaskConfig", "TaskError", "make_task", "problem_json", "problem_record"]
