"""Tasks: how a problem becomes a prompt and how an output is scored.

The sequential controller and the eval harness are written against `Task`; Countdown is
the project's own task (its thread protocols, traces and search live in
reasoning/countdown/), and `math` reads GSM8K / MATH-500-style files and scores answers
with math-verify in a time-bounded worker (reward/math_answer.py).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from reward import Verdict, verify_countdown
from reward.trace_steps import render_problem


class Task(Protocol):
    name: str

    def read_problems(self, path: str | Path) -> list[Any]: ...

    def prompt_ids(self, problem: Any, tokenizer: Any) -> list[int]: ...

    def verify(self, problem: Any, output: str) -> Verdict: ...


class CountdownTask:
    """Prompt: <bos> `target|numbers` and a newline, as in the SFT traces."""

    name = "countdown"

    def read_problems(self, path: str | Path) -> list[Any]:
        from reasoning.countdown.problem_files import read_problems

        return read_problems(path)

    def prompt_ids(self, problem: Any, tokenizer: Any) -> list[int]:
        return [tokenizer.bos_token_id, *tokenizer.encode(render_problem(problem.target, problem.numbers) + "\n")]

    def verify(self, problem: Any, output: str) -> Verdict:
        return verify_countdown(problem.numbers, problem.target, output)


class MathTask:
    """Prompt: the question and the instruction to box the answer; math-verify scores it."""

    name = "math"

    def __init__(self, timeout_s: float = 5.0):
        self.timeout_s = timeout_s
        self._verifier = None
        self._lock = threading.Lock()  # verify runs in worker threads: start one verifier only

    def read_problems(self, path: str | Path) -> list[Any]:
        from reasoning.math_task import read_math_problems

        return read_math_problems(path)

    def prompt_ids(self, problem: Any, tokenizer: Any) -> list[int]:
        from reasoning.math_task import math_prompt

        ids = tokenizer.encode(math_prompt(problem) + "\n")
        bos = tokenizer.bos_token_id
        return ids if bos is None or ids[:1] == [bos] else [bos, *ids]

    def verify(self, problem: Any, output: str) -> Verdict:
        from reward.math_answer import MathVerifier

        with self._lock:
            if self._verifier is None:
                self._verifier = MathVerifier(timeout_s=self.timeout_s)
        return self._verifier.verify(problem.answer, output)

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.close()
            self._verifier = None


def make_task(name: str) -> Task:
    if name == "countdown":
        return CountdownTask()
    if name == "math":
        return MathTask()
    raise ValueError(f"unknown task {name!r} (known: countdown, math)")
