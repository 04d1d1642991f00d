"""verify_countdown on hand-worked outputs: one case per Reason, then the rules."""

from dataclasses import dataclass

import pytest

from reward import Reason, Verdict, verify_countdown
from reward.countdown import DEFAULT_FORMATS, MAX_OUTPUT_CHARS
from reward.expression_format import MAX_ANSWER_CHARS


def check(numbers, target, answer):
    return verify_countdown(numbers, target, f"Let me think.\n<answer>{answer}</answer>")


# --- one case per Reason (BAD_RECORD is covered in test_record.py) ---


def test_correct():
    # 6 / (1 - 3/4) = 6 / (1/4) = 24: the fractional intermediate 1/4 is allowed.
    assert check([1, 3, 4, 6], 24, "6/(1-3/4)") == Verdict(1.0, Reason.CORRECT)


def test_no_answer():
    verdict = verify_countdown([1, 2], 3, "I think it is 1+2")
    assert (verdict.reward, verdict.reason) == (0.0, Reason.NO_ANSWER)
    assert "expression" in verdict.detail


def test_bad_syntax():
    verdict = check([1, 2], 3, "1 + 2 )")
    assert (verdict.reward, verdict.reason) == (0.0, Reason.BAD_SYNTAX)
    assert "')'" in verdict.detail and "position 6" in verdict.detail
    # With an '=' the answer is read as a solution path (reward/trace_format.py).
    verdict = check([1, 2], 3, "1 + 2 =")
    assert (verdict.reason, verdict.detail) == (Reason.BAD_SYNTAX, "step 1: not a step line: '1 + 2 ='")


def test_wrong_numbers():
    verdict = check([1, 2, 3], 6, "2*3")
    assert (verdict.reward, verdict.reason, verdict.detail) == (
        0.0,
        Reason.WRONG_NUMBERS,
        "1 missing",
    )


def test_wrong_value():
    verdict = check([1, 3, 4, 6], 24, "1+3+4/6")  # 4 + 2/3 = 14/3
    assert (verdict.reward, verdict.reason) == (0.0, Reason.WRONG_VALUE)
    assert verdict.detail == "evaluates to 14/3, target 24"


def test_division_by_zero():
    verdict = check([5, 5, 7], 1, "7/(5-5)")
    assert (verdict.reward, verdict.reason) == (0.0, Reason.DIVISION_BY_ZERO)


def test_too_long_output():
    verdict = verify_countdown([1], 1, "x" * (MAX_OUTPUT_CHARS + 1))
    assert (verdict.reward, verdict.reason) == (0.0, Reason.TOO_LONG)


def test_too_long_answer():
    verdict = check([1], 1, " " * MAX_ANSWER_CHARS + "1")
    assert (verdict.reward, verdict.reason) == (0.0, Reason.TOO_LONG)


def test_limits_are_inclusive():
    padding = "x" * (MAX_OUTPUT_CHARS - len("<answer>1</answer>"))
    assert verify_countdown([1], 1, padding + "<answer>1</answer>").is_correct
    assert check([1], 1, " " * (MAX_ANSWER_CHARS - 1) + "1").is_correct


# --- the Countdown rules ---


@pytest.mark.parametrize(
    ("numbers", "target", "answer"),
    [
        ([1, 3, 4, 6], 24, " 6 / ( 1 - 3 / 4 ) "),  # whitespace anywhere
        ([1, 3, 4, 6], 24, "6/\n(1-\t3/4)\r\n"),
        ([2, 9, 10], 17, "10-(2-9)"),  # negative intermediate: 10 - (-7) = 17
        ([3, 8, 9], 4, "3-8+9"),  # (3-8)+9 = -5 + 9 = 4
        ([25, 50, 75, 100, 3, 6], 952, "((100+6)*3*75-50)/25"),  # (106*225-50)/25 = 952
        ([1, 1], 2, "1+1"),  # repeated numbers, each used as often as given
        ([7], 7, "7"),
        ([7], 7, "(((7)))"),
        ([0, 4], 4, "4+0"),
        ([1, 5, 3], -1, "1-5+3"),  # negative target
    ],
)
def test_correct_answers(numbers, target, answer):
    assert check(numbers, target, answer).reason is Reason.CORRECT


def test_numbers_may_be_used_in_any_order():
    for numbers in ([1, 3, 4, 6], [6, 4, 3, 1], [3, 6, 1, 4]):
        assert check(numbers, 24, "6/(1-3/4)").is_correct


@pytest.mark.parametrize(
    ("numbers", "answer", "detail"),
    [
        ([2, 3, 4], "2*3*4*4", "4 used 2 times, given 1"),  # used twice
        ([2, 3, 4], "2*3", "4 missing"),
        ([2, 3, 4], "2*3*4*1", "1 not given"),  # extra number
        ([2, 2, 3], "2*3", "2 used 1 times, given 2"),  # a repeated number used once
        ([2, 3], "2*03", None),  # a leading zero is a syntax error, not 3
        ([1, 2], "4-1-2", "4 not given"),
        ([1, 2, 3], "3*3*2*2", "1 missing; 2 used 2 times, given 1; 3 used 2 times, given 1"),
    ],
)
def test_wrong_numbers_details(numbers, answer, detail):
    verdict = check(numbers, 24, answer)
    if detail is None:
        assert verdict.reason is Reason.BAD_SYNTAX
    else:
        assert (verdict.reason, verdict.detail) == (Reason.WRONG_NUMBERS, detail)


def test_numbers_are_checked_before_division_by_zero():
    # 5/(5-5) also divides by zero, but the missing 7 is reported first.
    assert check([5, 5, 5, 7], 1, "5/(5-5)").reason is Reason.WRONG_NUMBERS


def test_last_answer_wins():
    output = "<answer>1+2</answer> hmm, no: <answer>1*2</answer>"
    assert verify_countdown([1, 2], 2, output).is_correct
    assert verify_countdown([1, 2], 3, output).reason is Reason.WRONG_VALUE


def test_unclosed_answer_is_no_answer():
    assert verify_countdown([1, 2], 3, "<answer>1+2").reason is Reason.NO_ANSWER


def test_unclosed_last_answer_falls_back_to_last_complete_one():
    output = "<answer>1+2</answer> let me double check <answer>2+1"
    assert verify_countdown([1, 2], 3, output).is_correct


@pytest.mark.parametrize("answer", ["", "   ", "\n"])
def test_empty_answer_is_bad_syntax(answer):
    assert check([1, 2], 3, answer).reason is Reason.BAD_SYNTAX


@pytest.mark.parametrize("answer", ["-1+4", "1**2", "4//1", "(1)(4)", "1,4", "1 4"])
def test_operators_outside_the_grammar_are_bad_syntax(answer):
    assert check([1, 4], 4, answer).reason is Reason.BAD_SYNTAX


# --- the AnswerFormat hook ---


@dataclass(frozen=True)
class FixedFormat:
    """A stand-in format that applies when `marker` occurs and returns a fixed verdict."""

    name: str
    marker: str
    verdict: Verdict

    def extract(self, output):
        return output if self.marker in output else None

    def check(self, answer, numbers, target):
        return self.verdict


def test_first_applicable_format_decides():
    trace = FixedFormat("trace", "<trace>", Verdict.fail(Reason.WRONG_VALUE, "from trace"))
    formats = (trace, *DEFAULT_FORMATS)
    both = "<trace>...</trace><answer>1+2</answer>"
    assert verify_countdown([1, 2], 3, both, formats=formats).detail == "from trace"
    assert verify_countdown([1, 2], 3, "<answer>1+2</answer>", formats=formats).is_correct


def test_no_applicable_format_lists_the_formats_tried():
    custom = FixedFormat("custom", "<custom>", Verdict.correct())
    verdict = verify_countdown([1, 2], 3, "nothing", formats=(custom, *DEFAULT_FORMATS))
    assert verdict.reason is Reason.NO_ANSWER
    assert verdict.detail == "no answer found (formats tried: custom, trace, expression)"
