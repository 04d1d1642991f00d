"""Countdown verification: score one model output against (numbers, target).

`verify_countdown` is total: for any string it returns a Verdict (reward 1.0 or 0.0
and a Reason) and never raises. Outputs longer than MAX_OUTPUT_CHARS are rejected as
TOO_LONG before any scanning, so a runaway generation costs O(1). Otherwise the answer
formats are tried in order (see reward.formats) and the first that finds an answer
span decides; an output in which no format finds one is NO_ANSWER.

`numbers` and `target` are trusted here (they come from the project's own problem
files); records read from outside go through reward.record.parse_record first.
"""

from __future__ import annotations

from collections.abc import Sequence

from reward.expression_format import ExpressionFormat
from reward.formats import AnswerFormat
from reward.trace_format import TraceFormat
from reward.verdict import Reason, Verdict

MAX_OUTPUT_CHARS = 65_536

DEFAULT_FORMATS: tuple[AnswerFormat, ...] = (TraceFormat(), ExpressionFormat())


def verify_countdown(
    numbers: Sequence[int],
    target: int,
    output: str,
    formats: Sequence[AnswerFormat] = DEFAULT_FORMATS,
) -> Verdict:
    """Score `output` for the Countdown problem (`numbers`, `target`).

    >>> verify_countdown([1, 3, 4, 6], 24, "<answer>6/(1-3/4)</answer>").reason
    <Reason.CORRECT: 'correct'>
    """
    if len(output) > MAX_OUTPUT_CHARS:
        return Verdict.fail(
            Reason.TOO_LONG, f"output has {len(output)} characters, limit {MAX_OUTPUT_CHARS}"
        )
    for answer_format in formats:
        answer = answer_format.extract(output)
        if answer is not None:
            return answer_format.check(answer, numbers, target)
    names = ", ".join(answer_format.name for answer_format in formats)
    return Verdict.fail(Reason.NO_ANSWER, f"no answer found (formats tried: {names})")
