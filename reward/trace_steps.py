"""The step line of Countdown search traces: one arithmetic step and the numbers left.

    19-3=16|12 16

reads "combine 19 and 3 with -, giving 16; the numbers left are 12 and 16". Traces,
children's prompts and solution paths are made of such lines, so this module is the one
definition that the trace generators (reasoning/) render and the verifier parses. The
problem line that starts every prompt has the same shape without a step: `22|3 12 19`
(target | numbers).

Rules are APR's: + and * as usual, subtraction never goes negative, division is exact
(and never by zero). The numbers left are the previous numbers without the two operands,
in their previous order, with the result appended.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

MAX_STEP_LINE_CHARS = 200
# re.ASCII: \d must not match other scripts' digits, which int() would accept.
_STEP = re.compile(r"(\d{1,9})([-+*/])(\d{1,9})=(\d{1,12})\|(\d{1,12}(?: \d{1,12})*)", re.ASCII)
_PROBLEM = re.compile(r"(\d{1,12})\|(\d{1,12}(?: \d{1,12})*)", re.ASCII)


@dataclass(frozen=True)
class Step:
    a: int
    op: str
    b: int
    result: int
    left: tuple[int, ...]


class StepError(ValueError):
    """A step line that does not parse, or that does not follow from the numbers before it."""

    def __init__(self, kind: str, message: str):
        self.kind = kind  # "syntax", "numbers" or "arithmetic"
        super().__init__(message)


def apply_op(a: int, op: str, b: int) -> int | None:
    """The value of `a op b` under APR's rules, or None when the step is not allowed."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    if op == "/":
        return a // b if b != 0 and a % b == 0 else None
    raise AssertionError(f"unknown operator {op!r}")


def render_problem(target: int, numbers: Sequence[int]) -> str:
    return f"{target}|{' '.join(map(str, numbers))}"


def parse_problem(line: str) -> tuple[int, tuple[int, ...]]:
    match = _PROBLEM.fullmatch(line)
    if match is None:
        raise StepError("syntax", f"not a problem line: {line[:60]!r}")
    return int(match[1]), tuple(int(n) for n in match[2].split(" "))


def make_step(numbers: Sequence[int], i: int, j: int, op: str) -> Step:
    """The step that combines numbers[i] (left operand) and numbers[j] with `op`."""
    result = apply_op(numbers[i], op, numbers[j])
    assert result is not None, f"{numbers[i]}{op}{numbers[j]} is not an allowed step"
    left = tuple(n for k, n in enumerate(numbers) if k not in (i, j)) + (result,)
    return Step(numbers[i], op, numbers[j], result, left)


def render_step(step: Step) -> str:
    return f"{step.a}{step.op}{step.b}={step.result}|{' '.join(map(str, step.left))}"


def parse_step(line: str) -> Step:
    if len(line) > MAX_STEP_LINE_CHARS:
        raise StepError("syntax", f"step line longer than {MAX_STEP_LINE_CHARS} characters")
    match = _STEP.fullmatch(line)
    if match is None:
        raise StepError("syntax", f"not a step line: {line[:60]!r}")
    left = tuple(int(n) for n in match[5].split(" "))
    return Step(int(match[1]), match[2], int(match[3]), int(match[4]), left)


def check_step(numbers: Sequence[int], step: Step) -> None:
    """Raise StepError unless `step` is an allowed step from the multiset `numbers`."""
    available = Counter(numbers)
    available.subtract([step.a, step.b])
    if min(available.values(), default=0) < 0:
        raise StepError("numbers", f"{step.a} and {step.b} are not both among {list(numbers)}")
    value = apply_op(step.a, step.op, step.b)
    if value is None or value != step.result:
        raise StepError("arithmetic", f"{step.a}{step.op}{step.b}={step.result} is not an allowed step")
    available[step.result] += 1
    if Counter(step.left) != +available:
        raise StepError("numbers", f"after {step.a}{step.op}{step.b}={step.result} the numbers left are not {list(step.left)}")
