"""The Countdown task (APR's arithmetic game): the project's own prompts and verifier.

Prompt (raw, as in the SFT traces): BOS, then `target|numbers` and a newline; with chat
prompts the same line is the user's message. Problems come from `task.train_file` /
`task.eval_file` when given, else from the generator settings in `task.countdown`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable

from reasoning.countdown.problem_files import ProblemFileError, read_problems
from reasoning.countdown.problems import Problem, generate_problems, problem_key
from reasoning.tasks.base import FileTask, separate
from reasoning.tasks.prompts import TaskError
from reward import Verdict, verify_countdown
from reward.formats import last_tagged_span
from reward.trace_steps import render_problem


class CountdownTask(FileTask):
    name = "countdown"

    def read_problems(self, path: str | Path) -> list[Problem]:
        try:
            return read_problems(path)
        except ProblemFileError as e:
            raise TaskError(str(e)) from None

    def split(self) -> tuple[list[Problem], list[Problem]]:
        if self.config.train_file:
            return super().split()
        train, val = generate_problems(self.config.countdown)
        held_out = self.read_problems(self.config.eval_file) if self.config.eval_file else val
        return separate(train, held_out)

    def prompt_ids(self, problem: Problem, tokenizer: Any) -> list[int]:
        return self.prompts.text_ids(tokenizer, render_problem(problem.target, problem.numbers) + "\n")

    def score(self, problem: Problem, output: str) -> Verdict:
        return verify_countdown(problem.numbers, problem.target, output)

    def final_answer(self, output: str) -> str | None:
        return last_tagged_span(output, "<answer>", "</answer>")

    def row_key(self, row: dict[str, Any]) -> Hashable | None:
        numbers, target = row.get("numbers"), row.get("target")
        return problem_key(numbers, target) if isinstance(numbers, list) and isinstance(target, int) else None
