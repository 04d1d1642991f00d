"""The trace answer format: a solution path of step lines inside `<answer>`.

    <answer>19-3=16|12 16
    16+12=28|28</answer>

Search traces (SoS+ and APR, see reasoning/countdown/) end with the path that reached
the target, written as step lines (reward/trace_steps.py). Every line is checked against
the numbers before it, starting from the problem's numbers; the path must use all of
them and end at the target. An `<answer>` whose body holds no `=` is not a path: the
expression format decides it instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reward.formats import last_tagged_span
from reward.trace_steps import StepError, check_step, parse_step
from reward.verdict import Reason, Verdict

MAX_PATH_CHARS = 2_048
MAX_PATH_STEPS = 16
_STEP_REASONS = {"syntax": Reason.BAD_SYNTAX, "numbers": Reason.WRONG_NUMBERS, "arithmetic": Reason.BAD_STEP}


@dataclass(frozen=True)
class TraceFormat:
    name: str = "trace"

    def extract(self, output: str) -> str | None:
        span = last_tagged_span(output, "<answer>", "</answer>")
        return span if span is not None and "=" in span else None

    def check(self, answer: str, numbers: Sequence[int], target: int) -> Verdict:
        if len(answer) > MAX_PATH_CHARS:
            return Verdict.fail(Reason.TOO_LONG, f"solution path has {len(answer)} characters, limit {MAX_PATH_CHARS}")
        lines = answer.strip("\n").split("\n")
        if len(lines) > MAX_PATH_STEPS:
            return Verdict.fail(Reason.TOO_LONG, f"solution path has {len(lines)} steps, limit {MAX_PATH_STEPS}")
        state: Sequence[int] = list(numbers)
        for number, line in enumerate(lines, start=1):
            try:
                step = parse_step(line)
                check_step(state, step)
            except StepError as e:
                return Verdict.fail(_STEP_REASONS[e.kind], f"step {number}: {e}")
            state = step.left
        if len(state) != 1:
            return Verdict.fail(Reason.WRONG_NUMBERS, f"path ends with {len(state)} numbers left, not one")
        if state[0] != target:
            return Verdict.fail(Reason.WRONG_VALUE, f"path ends at {state[0]}, target {target}")
        return Verdict.correct()
