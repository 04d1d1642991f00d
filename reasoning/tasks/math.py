"""The `math` task: GSM8K / MATH-500-style files, answers checked by math-verify.

Files and columns: reasoning/math_task.py. Prompt: the question and the instruction to
put the final answer in \\boxed{} (raw, or the user's message of a chat). Scoring runs
math-verify in a worker process bounded by `task.reward_timeout_s`
(reward/math_answer.py); one worker per task, started on first use.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Hashable

from reasoning.math_task import MathFileError, MathProblem, math_prompt, read_math_problems
from reasoning.tasks.base import FileTask
from reasoning.tasks.prompts import TaskError
from reward import Verdict
from reward.math_answer import extract_answer


class MathTask(FileTask):
    name = "math"

    def __init__(self, config: Any):
        super().__init__(config)
        self._verifier = None
        self._lock = threading.Lock()  # score runs in worker threads: start one verifier only

    def read_problems(self, path: str | Path) -> list[MathProblem]:
        try:
            return read_math_problems(path)
        except MathFileError as e:
            raise TaskError(str(e)) from None

    def prompt_ids(self, problem: MathProblem, tokenizer: Any) -> list[int]:
        return self.prompts.text_ids(tokenizer, math_prompt(problem) + "\n")

    def score(self, problem: MathProblem, output: str) -> Verdict:
        from reward.math_answer import MathVerifier

        with self._lock:
            if self._verifier is None:
                self._verifier = MathVerifier(timeout_s=self.config.reward_timeout_s)
        return self._verifier.verify(problem.answer, output)

    def final_answer(self, output: str) -> str | None:
        answer, source = extract_answer(output)
        return None if source == "tail" else answer

    def row_key(self, row: dict[str, Any]) -> Hashable | None:
        question = row.get("question", row.get("problem"))
        return ("math", question) if isinstance(question, str) else None

    def close(self) -> None:
        with self._lock:
            if self._verifier is not None:
                self._verifier.close()
                self._verifier = None
