"""The Countdown task (APR's arithmetic game): the project's own prompts and verifier.

Prompt (raw, as in the SFT traces): BOS, then `target|numbers` and a newline; with chat
prompts the same line is the user's message. Problems come from `task.train_file` /
`task.eval_file` when given, else from the generator settings in `task.countdown`.

Countdown is also a generator task: it makes its own problems (`generate`, for
`treadle data countdown`), its own tokenizer (`new_tokenizer`, for fresh preset models)
and solver search traces (`trace_rows`, for `treadle traces` and `treadle sft`: SoS+,
APR spawn/join, or parallel blocks). The commands ask the task for these, so they never
import reasoning/countdown themselves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Hashable

from reasoning.countdown.problem_files import ProblemFileError, read_problems, write_problems
from reasoning.countdown.problems import Problem, ProblemSpaceExhausted, generate_problems, problem_key
from reasoning.tasks.base import FileTask, separate
from reasoning.tasks.prompts import TaskError
from reward import Verdict, verify_countdown
from reward.formats import last_tagged_span
from reward.trace_steps import render_problem


class CountdownTask(FileTask):
    name = "countdown"
    trace_kinds = ("sos", "apr", "parallel")
    """The traces.kind values `trace_rows` writes."""

    def read_problems(self, path: str | Path) -> list[Problem]:
        try:
            return read_problems(path)
        except ProblemFileError as e:
            raise TaskError(str(e)) from None

    def split(self) -> tuple[list[Problem], list[Problem]]:
        if self.config.train_file:
            return super().split()
        train, val = self.generate()
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

    def generate(self, progress: Callable[[int], None] | None = None) -> tuple[list[Problem], list[Problem]]:
        """(train, val) problems drawn by `task.countdown`; TaskError when the settings admit too few."""
        try:
            return generate_problems(self.config.countdown, progress)
        except ProblemSpaceExhausted as e:
            raise TaskError(f"task.countdown: {e}") from None

    def write_problems(self, path: str | Path, problems: list[Problem]) -> None:
        write_problems(path, problems)

    def new_tokenizer(self, tokenizer_config: Any) -> Any:
        """The Countdown tokenizer (reasoning/countdown/tokenizer.py) for a fresh preset model."""
        from reasoning.countdown.tokenizer import build_tokenizer

        return build_tokenizer(tokenizer_config.number_digits)

    def trace_rows(self, problems: list[Problem], trace_config: Any, tokenizer: Any) -> tuple[list[dict], Any]:
        """Version-2 episode rows of the solver's SoS+, APR or parallel-block traces, and what was left out."""
        from reasoning.countdown.trace_tokens import trace_rows

        return trace_rows(problems, trace_config, tokenizer)
