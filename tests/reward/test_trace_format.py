"""The trace answer format: solution paths of step lines, each checked by hand-worked cases."""
from __future__ import annotations

import pytest

from reward import Reason, verify_countdown
from reward.trace_steps import StepError, check_step, make_step, parse_problem, parse_step, render_problem, render_step


def answer(*lines: str) -> str:
    return "<answer>" + "\n".join(lines) + "</answer>"


def test_correct_path():
    # 19+3=22 leaves [12, 22]; 22+12=34 leaves [34] = target.
    verdict = verify_countdown([3, 12, 19], 34, "search...\n" + answer("19+3=22|12 22", "22+12=34|34"))
    assert verdict.reason is Reason.CORRECT and verdict.reward == 1.0


@pytest.mark.parametrize(
    "lines, reason, detail",
    [
        (("19+3=23|12 23", "23+12=35|35"), Reason.BAD_STEP, "step 1: 19+3=23 is not an allowed step"),
        (("3-19=0|12 0",), Reason.BAD_STEP, "step 1: 3-19=0 is not an allowed step"),  # negative
        (("19/3=6|12 6",), Reason.BAD_STEP, "step 1: 19/3=6 is not an allowed step"),  # inexact
        (("19+19=38|12 38",), Reason.WRONG_NUMBERS, "step 1: 19 and 19 are not both among [3, 12, 19]"),
        (("19+3=22|22",), Reason.WRONG_NUMBERS, "step 1: after 19+3=22 the numbers left are not [22]"),
        (("19+3=22|12 22",), Reason.WRONG_NUMBERS, "path ends with 2 numbers left, not one"),
        (("19+3=22|12 22", "22+12=34|34"), Reason.WRONG_VALUE, "path ends at 34, target 33"),
        (("19 + 3 = 22",), Reason.BAD_SYNTAX, "step 1: not a step line: '19 + 3 = 22'"),
    ],
)
def test_each_failure(lines, reason, detail):
    target = 33 if reason is Reason.WRONG_VALUE else 34
    verdict = verify_countdown([3, 12, 19], target, answer(*lines))
    assert (verdict.reward, verdict.reason, verdict.detail) == (0.0, reason, detail)


def test_division_by_zero_is_not_a_step():
    verdict = verify_countdown([0, 5], 0, answer("5/0=0|0"))
    assert verdict.reason is Reason.BAD_STEP


def test_expression_answers_still_go_to_the_expression_format():
    assert verify_countdown([3, 12, 19], 34, "<answer>19+3+12</answer>").reason is Reason.CORRECT


def test_long_paths_are_refused_quickly():
    verdict = verify_countdown([1, 2], 3, answer(*["2+1=3|3"] * 100))
    assert verdict.reason is Reason.TOO_LONG


def test_render_and_parse_round_trip():
    step = make_step((12, 4, 5), 0, 1, "/")
    assert render_step(step) == "12/4=3|5 3"
    assert parse_step("12/4=3|5 3") == step
    check_step((12, 4, 5), step)
    assert render_problem(22, (3, 12, 19)) == "22|3 12 19"
    assert parse_problem("22|3 12 19") == (22, (3, 12, 19))
    with pytest.raises(StepError):
        parse_problem("22|")


def test_unicode_digits_in_a_path_are_bad_syntax():
    # Arabic-Indic 19 would be read as 19 by int(); the format is ASCII only.
    verdict = verify_countdown([3, 12, 19], 34, answer("\u0661\u0669+3=22|12 22", "22+12=34|34"))
    assert verdict.reason is Reason.BAD_SYNTAX
