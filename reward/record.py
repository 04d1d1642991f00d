"""Validation of Countdown records read from outside, e.g. `treadle verify` JSONL lines.

A record is a JSON object {"numbers": [...], "target": T, "output": "..."}. Its numbers
and target are checked strictly before verification, because a malformed problem is a
data error, not a model error: it is reported as Reason.BAD_RECORD with a message
naming the field. Strict means: `numbers` is a JSON list of 1..MAX_NUMBERS integers,
each 0 <= n < NUMBER_LIMIT; `target` is an integer with |target| < TARGET_LIMIT;
`output` is a string. Booleans and floats (even 3.0) are not integers here. Keys other
than these three are ignored, so callers can pass whole rows through.
"""

from __future__ import annotations

from collections.abc import Mapping

from reward.countdown import verify_countdown
from reward.verdict import Reason, Verdict

MAX_NUMBERS = 16
NUMBER_LIMIT = 10**9  # exclusive; matches reward.expression.MAX_LITERAL_DIGITS
TARGET_LIMIT = 10**12  # exclusive bound on |target|


class BadRecord(ValueError):
    """A record is not a well-formed Countdown problem; the message names the field."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_record(obj: object) -> tuple[list[int], int, str]:
    """Return (numbers, target, output) from a decoded JSON object, or raise BadRecord."""
    if not isinstance(obj, Mapping):
        raise BadRecord(f"record: expected a JSON object, got {type(obj).__name__}")
    for key in ("numbers", "target", "output"):
        if key not in obj:
            raise BadRecord(f"{key}: missing")
    numbers, target, output = obj["numbers"], obj["target"], obj["output"]
    if not isinstance(numbers, list):
        raise BadRecord(f"numbers: expected a list, got {type(numbers).__name__}")
    if not 1 <= len(numbers) <= MAX_NUMBERS:
        raise BadRecord(f"numbers: expected 1 to {MAX_NUMBERS} items, got {len(numbers)}")
    for i, number in enumerate(numbers):
        if not _is_int(number):
            raise BadRecord(f"numbers[{i}]: expected an int, got {type(number).__name__}")
        # Out-of-range values are not echoed: an int past 4300 digits cannot be formatted.
        if not 0 <= number < NUMBER_LIMIT:
            raise BadRecord(f"numbers[{i}]: must be in [0, {NUMBER_LIMIT})")
    if not _is_int(target):
        raise BadRecord(f"target: expected an int, got {type(target).__name__}")
    if not abs(target) < TARGET_LIMIT:
        raise BadRecord(f"target: absolute value must be below {TARGET_LIMIT}")
    if not isinstance(output, str):
        raise BadRecord(f"output: expected a string, got {type(output).__name__}")
    return list(numbers), target, output


def verify_record(obj: object) -> Verdict:
    """parse_record then verify_countdown; a malformed record is a BAD_RECORD verdict."""
    try:
        numbers, target, output = parse_record(obj)
    except BadRecord as err:
        return Verdict.fail(Reason.BAD_RECORD, str(err))
    return verify_countdown(numbers, target, output)
