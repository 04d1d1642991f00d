"""The `custom` task: a user's data file and reward function.

A row has a `prompt` (text) or `messages` (a chat: a list of {role, content}; always
rendered with the chat template, ending with the generation prompt), an optional `id`,
and any other columns. The reward function named by `task.reward`
("package.module:function") is called with the whole row as a dict and the output
text, in a worker process bounded by `task.reward_timeout_s` (reward/custom_reward.py):
one that raises, hangs, or returns NaN or a non-number scores 0 with a reason, and the
failure is counted. A reward >= `task.correct_at` counts as correct.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable

from reasoning.tasks.base import FileTask
from reasoning.tasks.prompts import TaskError
from reasoning.tasks.rows import read_messages, read_rows, row_id
from reward import Verdict


@dataclass(frozen=True)
class CustomProblem:
    id: str
    row: dict[str, Any]
    """Every column of the file's row, as the reward function receives it."""

    @property
    def key(self) -> tuple[str, str]:
        """Identity: the prompt text, or the messages as JSON."""
        if "messages" in self.row and self.row["messages"] is not None:
            return ("custom", json.dumps(self.row["messages"], sort_keys=True))
        return ("custom", self.row["prompt"])

    def __hash__(self) -> int:  # rows are dicts: hash by identity of the problem
        return hash((self.id, self.key))


class CustomTask(FileTask):
    name = "custom"

    def __init__(self, config: Any):
        super().__init__(config)
        self._reward = None
        self._lock = threading.Lock()

    def read_problems(self, path: str | Path) -> list[CustomProblem]:
        problems: list[CustomProblem] = []
        first_row_of: dict[str, int] = {}
        for index, (where, row) in enumerate(read_rows(path)):
            has_prompt, has_messages = row.get("prompt") is not None, row.get("messages") is not None
            if has_prompt == has_messages:
                raise TaskError(f"{where}: needs exactly one of the columns prompt and messages")
            if has_prompt and (not isinstance(row["prompt"], str) or not row["prompt"].strip()):
                raise TaskError(f"{where}: column prompt: expected non-empty text")
            if has_messages:
                row = {**row, "messages": read_messages(where, row["messages"])}
            pid = row_id(where, index, row)
            if pid in first_row_of:
                raise TaskError(f"{where}: column id: duplicate id {pid!r} (first in row {first_row_of[pid]})")
            first_row_of[pid] = index
            problems.append(CustomProblem(pid, row))
        if not problems:
            raise TaskError(f"{path}: holds no problems")
        return problems

    def check(self, tokenizer: Any) -> None:
        super().check(tokenizer)
        from reward.custom_reward import check_reward_function

        try:
            check_reward_function(self.config.reward)
        except ValueError as e:
            raise TaskError(f"task.reward: {e}") from None

    def prompt_ids(self, problem: CustomProblem, tokenizer: Any) -> list[int]:
        messages = problem.row.get("messages")
        if messages is not None:
            return self.prompts.chat_ids(tokenizer, messages)
        return self.prompts.text_ids(tokenizer, problem.row["prompt"])

    def score(self, problem: CustomProblem, output: str) -> Verdict:
        from reward.custom_reward import CustomReward

        with self._lock:
            if self._reward is None:
                config = self.config
                self._reward = CustomReward(config.reward, timeout_s=config.reward_timeout_s, correct_at=config.correct_at)
        return self._reward.score(problem.row, output)

    def final_answer(self, output: str) -> str | None:
        """The last non-empty line of the output."""
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        return lines[-1] if lines else None

    def row_key(self, row: dict[str, Any]) -> Hashable | None:
        """A `prompt` row's key; a chat's key is its messages before the last assistant turn."""
        if isinstance(row.get("prompt"), str):
            return ("custom", row["prompt"])
        messages = row.get("messages")
        if isinstance(messages, list) and messages:
            if isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
                messages = messages[:-1]
            return ("custom", json.dumps(messages, sort_keys=True))
        return None

    @property
    def failures(self) -> dict[str, int]:
        """Reward-function failures so far, by kind (raised, timeout, nan, not_a_number, ...)."""
        return dict(self._reward.failures) if self._reward is not None else {}

    def close(self) -> None:
        with self._lock:
            if self._reward is not None:
                self._reward.close()
                self._reward = None
