"""The `wordmath` task: the `math` task on generated word problems (reasoning/wordmath/).

Everything a problem does in training and evaluation is the math task's: its problems are
MathProblems (question, GSM8K answer), prompts are `math_prompt`, outputs are scored by
math-verify, keys are the question. What it adds is a generator task's capabilities, which
the commands ask for: its own problems (`generate`, `write_problems`: `treadle data
wordmath`, and `treadle train` without task files), chat SFT examples of them
(`sft_rows`: `treadle sft` without sft.data_file), parallel-block traces of them
(`trace_rows` with traces.kind parallel: `treadle traces`, reasoning/wordmath/parallel_traces.py)
and a tokenizer for a fresh preset model (`new_tokenizer`: `treadle model init`, `treadle
sft`). Files given in task.train_file / task.eval_file are read as the math task reads
them, each problem keeping the file's `structure` column (WordMathProblem), which the
traces are written from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from reasoning.math_task import MathProblem
from reasoning.tasks.base import separate
from reasoning.tasks.math import MathTask
from reasoning.tasks.prompts import TaskError


class WordMathTask(MathTask):
    name = "wordmath"
    data_suffix = ".jsonl"
    """Problem files `treadle data wordmath` writes: JSON lines, as GSM8K ships."""
    trace_kinds = ("parallel",)
    """The traces.kind values `trace_rows` writes; its sequential examples are `sft_rows`."""

    def read_problems(self, path: str | Path) -> list[MathProblem]:
        from reasoning.math_task import MathFileError
        from reasoning.wordmath.rows import read_word_problems

        try:
            return read_word_problems(path)
        except MathFileError as e:
            raise TaskError(str(e)) from None

    def split(self) -> tuple[list[MathProblem], list[MathProblem]]:
        if self.config.train_file:
            return super().split()
        from reasoning.wordmath.rows import math_problem

        train, val = self.generate()
        held_out = [math_problem(p) for p in val]
        if self.config.eval_file:
            held_out = self.read_problems(self.config.eval_file)
        return separate([math_problem(p) for p in train], held_out)

    def generate(self, progress: Callable[[int], None] | None = None) -> tuple[list, list]:
        """(train, val) WordProblems drawn by `task.wordmath`; TaskError when the settings admit too few."""
        from reasoning.wordmath.problems import ProblemSpaceExhausted, generate_problems

        try:
            return generate_problems(self.config.wordmath, progress)
        except ProblemSpaceExhausted as e:
            raise TaskError(f"task.wordmath: {e}") from None

    def count_distinct(self) -> int:
        """How many distinct problems (by template and numbers) `task.wordmath` admits."""
        from reasoning.wordmath.counting import count_distinct

        return count_distinct(self.config.wordmath)

    def write_problems(self, path: str | Path, problems: list) -> None:
        """Problem rows (id, question, answer, structure) of generated WordProblems."""
        from reasoning.wordmath.rows import problem_row, write_rows

        write_rows(path, (problem_row(p) for p in problems))

    def sft_rows(self, problems: list) -> list[dict[str, Any]]:
        """Chat SFT examples (`messages`, with id, question and answer) of generated problems."""
        from reasoning.wordmath.rows import sft_row

        return [sft_row(p) for p in problems]

    def trace_rows(self, problems: list, trace_config: Any, tokenizer: Any) -> tuple[list[dict], Any]:
        """Version-2 episode rows of the parallel worked solutions of `problems` (WordMathProblems
        with their structure), prompted as this task prompts, and what was left out."""
        from reasoning.wordmath.parallel_traces import StructureError, trace_rows

        if trace_config.kind not in self.trace_kinds:
            raise TaskError(
                f"traces.kind: the wordmath task writes {' or '.join(self.trace_kinds)} traces, not "
                f"{trace_config.kind!r} (its sequential examples are the chat SFT rows of `treadle data wordmath`)"
            )
        self.check(tokenizer)
        try:
            return trace_rows(
                problems, trace_config.kind, trace_config.max_tokens, tokenizer,
                lambda problem: self.prompt_ids(problem, tokenizer), self.name,
            )  # fmt: skip
        except StructureError as e:
            raise TaskError(str(e)) from None

    def new_tokenizer(self, tokenizer_config: Any) -> Any:
        """The wordmath BPE tokenizer (reasoning/wordmath/tokenizer.py), sized by task.wordmath
        (the countdown `tokenizer` section does not apply)."""
        from reasoning.wordmath.tokenizer import build_tokenizer

        return build_tokenizer(self.config.wordmath)
