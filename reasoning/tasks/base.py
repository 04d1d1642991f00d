"""The Task interface: where problems come from, their prompt, their score and identity.

Eval, SFT, the rollout workers and the learner see a task only through this interface
(built by reasoning/tasks/registry.py from the `task` config section), so generic code
never names one. A problem is a frozen dataclass with an `id` (unique within its file)
and a `key` (its identity across files: the train/validation split and the
seen/unseen accounting of evaluations compare keys); `problem_record` turns it into
the JSON object the episode table stores.

`score` never raises: whatever the output, it returns a Verdict (reward and reason).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Hashable, Protocol, Sequence

from reasoning.tasks.prompts import PromptBuilder, TaskError
from reward import Verdict


class Task(Protocol):
    name: str

    def read_problems(self, path: str | Path) -> list[Any]:
        """Every problem of a .parquet or .jsonl file; TaskError naming file, row and column."""
        ...

    def split(self) -> tuple[list[Any], list[Any]]:
        """(train, held-out) problems of `treadle train`, from the task's files or generator."""
        ...

    def check(self, tokenizer: Any) -> None:
        """Raise TaskError now if prompts cannot be built with this tokenizer."""
        ...

    def prompt_ids(self, problem: Any, tokenizer: Any) -> list[int]: ...

    def score(self, problem: Any, output: str) -> Verdict: ...

    def final_answer(self, output: str) -> str | None:
        """The answer an output commits to (what multi-path votes compare), or None."""
        ...

    def row_key(self, row: dict[str, Any]) -> Hashable | None:
        """The key of the problem a data row (e.g. an SFT example) is about, when the row
        has this task's problem columns; None otherwise."""
        ...

    def close(self) -> None: ...


def problem_record(problem: Any) -> dict[str, Any]:
    """The problem as a JSON-able dict (the episode table's `problem` column)."""
    return dataclasses.asdict(problem)


def problem_json(problem: Any) -> str:
    return json.dumps(problem_record(problem), sort_keys=True, ensure_ascii=False)


class FileTask:
    """What the file-based tasks share: prompts, files named by the config, the split."""

    name = ""

    def __init__(self, config: Any):
        """`config`: the TaskConfig (reasoning/tasks/config.py)."""
        self.config = config
        self.prompts = PromptBuilder(config.prompt_format, config.system_prompt)

    def read_problems(self, path: str | Path) -> list[Any]:
        raise NotImplementedError

    def split(self) -> tuple[list[Any], list[Any]]:
        if not self.config.train_file:
            raise TaskError(f"task.train_file: the {self.name} task needs a problem file to train on")
        train = self.read_problems(self.config.train_file)
        held_out = self.read_problems(self.config.eval_file) if self.config.eval_file else []
        return separate(train, held_out)

    def check(self, tokenizer: Any) -> None:
        self.prompts.check(tokenizer)

    def close(self) -> None:
        pass


def separate(train: Sequence[Any], held_out: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Train problems without any held-out key (train/validation separation).

    With no held-out file, nothing is held out. When every train problem is also held
    out (one file given for both), training keeps them all and evaluations report them
    as seen (their `accuracy_unseen` is then empty).
    """
    held_keys: set[Hashable] = {p.key for p in held_out}
    kept = [p for p in train if p.key not in held_keys]
    return (kept or list(train)), list(held_out)
