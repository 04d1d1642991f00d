"""Strict validation of Countdown records from JSONL, and the BAD_RECORD verdict."""

import pytest

from reward.record import MAX_NUMBERS, BadRecord, parse_record, verify_record
from reward.verdict import Reason

GOOD = {"numbers": [1, 3, 4, 6], "target": 24, "output": "<answer>6/(1-3/4)</answer>"}


def test_parse_good_record():
    assert parse_record(GOOD) == ([1, 3, 4, 6], 24, GOOD["output"])


def test_extra_keys_are_ignored():
    assert parse_record({**GOOD, "id": 7, "reward": None})[1] == 24


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([1, 2, 3], "record: expected a JSON object, got list"),
        ({"target": 24, "output": ""}, "numbers: missing"),
        ({**GOOD, "numbers": "1 3 4 6"}, "numbers: expected a list, got str"),
        ({**GOOD, "numbers": []}, "numbers: expected 1 to 16 items, got 0"),
        ({**GOOD, "numbers": [1] * (MAX_NUMBERS + 1)}, "got 17"),
        ({**GOOD, "numbers": [1, True]}, "numbers[1]: expected an int, got bool"),
        ({**GOOD, "numbers": [1, 3.0]}, "numbers[1]: expected an int, got float"),
        ({**GOOD, "numbers": [1, None]}, "numbers[1]: expected an int, got NoneType"),
        ({**GOOD, "numbers": [-1]}, "numbers[0]: must be in [0, 1000000000)"),
        ({**GOOD, "numbers": [10**9]}, "numbers[0]: must be in"),
        ({**GOOD, "numbers": [10**5000]}, "numbers[0]: must be in"),  # not formattable
        ({**GOOD, "target": "24"}, "target: expected an int, got str"),
        ({**GOOD, "target": False}, "target: expected an int, got bool"),
        ({**GOOD, "target": -(10**12)}, "target: absolute value must be below"),
        ({**GOOD, "output": None}, "output: expected a string, got NoneType"),
        ({**GOOD, "output": b"<answer>1</answer>"}, "output: expected a string, got bytes"),
    ],
)
def test_bad_records_name_the_field(record, message):
    with pytest.raises(BadRecord) as info:
        parse_record(record)
    assert message in str(info.value)


def test_limits_are_inclusive_where_documented():
    numbers, target, _ = parse_record(
        {"numbers": [0, 10**9 - 1] * 8, "target": -(10**12 - 1), "output": ""}
    )
    assert len(numbers) == MAX_NUMBERS and target == -(10**12 - 1)


def test_verify_record_scores_a_good_record():
    assert verify_record(GOOD).reason is Reason.CORRECT


def test_verify_record_turns_a_bad_record_into_a_verdict():
    verdict = verify_record({**GOOD, "target": 24.0})
    assert (verdict.reward, verdict.reason) == (0.0, Reason.BAD_RECORD)
    assert verdict.detail == "target: expected an int, got float"
