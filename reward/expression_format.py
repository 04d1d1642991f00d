"""The `<answer>EXPRESSION</answer>` answer format for Countdown.

The answer is the span inside the last complete `<answer>...</answer>` pair (tags are
exact and case-sensitive; see reward.formats.last_tagged_span). It scores 1.0 when it
is an expression of the grammar in reward.expression that uses exactly the given
numbers (as a multiset) and evaluates exactly to the target. Checks run in this order,
and the first failure is the verdict: span length (TOO_LONG), syntax (BAD_SYNTAX),
numbers (WRONG_NUMBERS), division by zero (DIVISION_BY_ZERO), value (WRONG_VALUE).
An empty or blank span is BAD_SYNTAX, not NO_ANSWER: the model did commit to an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reward.expression import DivisionByZero, ExpressionSyntaxError, parse
from reward.formats import last_tagged_span
from reward.numbers import number_mismatch
from reward.verdict import Reason, Verdict

OPEN_TAG = "<answer>"
CLOSE_TAG = "</answer>"
MAX_ANSWER_CHARS = 512  # 16 numbers of 9 digits with operators and brackets fit easily


@dataclass(frozen=True)
class ExpressionFormat:
    """AnswerFormat for an arithmetic expression between <answer> tags."""

    name: str = "expression"
    max_answer_chars: int = MAX_ANSWER_CHARS

    def extract(self, output: str) -> str | None:
        return last_tagged_span(output, OPEN_TAG, CLOSE_TAG)

    def check(self, answer: str, numbers: Sequence[int], target: int) -> Verdict:
        if len(answer) > self.max_answer_chars:
            return Verdict.fail(
                Reason.TOO_LONG,
                f"answer has {len(answer)} characters, limit {self.max_answer_chars}",
            )
        try:
            expression = parse(answer)
        except ExpressionSyntaxError as err:
            return Verdict.fail(Reason.BAD_SYNTAX, str(err))
        mismatch = number_mismatch(expression.numbers, numbers)
        if mismatch is not None:
            return Verdict.fail(Reason.WRONG_NUMBERS, mismatch)
        try:
            value = expression.evaluate()
        except DivisionByZero as err:
            return Verdict.fail(Reason.DIVISION_BY_ZERO, str(err))
        if value != target:
            return Verdict.fail(Reason.WRONG_VALUE, f"evaluates to {value}, target {target}")
        return Verdict.correct()
