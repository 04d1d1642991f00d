"""Untrusted output: oversized, deeply nested, binary, unicode and code-shaped answers.

Every case must come back as a zero-reward Verdict with a reason, quickly, and without
executing anything.
"""

import time

import pytest

from reward import Reason, verify_countdown
from reward.verdict import MAX_DETAIL_CHARS

NUMBERS, TARGET = [1, 2, 3], 6


def answer(body):
    return verify_countdown(NUMBERS, TARGET, f"<answer>{body}</answer>")


def test_two_megabyte_output_is_too_long_and_fast():
    output = "<answer>1+2+3</answer>" + "9" * 2_000_000
    start = time.perf_counter()
    verdict = verify_countdown(NUMBERS, TARGET, output)
    assert time.perf_counter() - start < 0.1
    assert verdict.reason is Reason.TOO_LONG
    assert "2000022 characters" in verdict.detail


def test_five_thousand_nested_parentheses_around_a_valid_core():
    verdict = answer("(" * 5000 + "1+2+3" + ")" * 5000)
    assert verdict.reason is Reason.TOO_LONG  # 10,005-character answer


def test_nesting_that_fits_the_answer_limit_is_bad_syntax():
    verdict = answer("(" * 200 + "1+2+3" + ")" * 200)
    assert verdict.reason is Reason.BAD_SYNTAX
    assert "nested deeper" in verdict.detail


@pytest.mark.parametrize(
    "body",
    [
        "1+2+3\x00",
        "\x00",
        "1+2+\uff13",  # fullwidth 3
        "1+2+\u0663",  # arabic-indic 3
        "1+2*\u00b3",  # superscript 3
        "1+2+3\u200b",  # zero-width space
        "1\u00a0+2+3",  # no-break space
        "1+2+3\ud800",  # lone surrogate
    ],
)
def test_non_ascii_and_control_characters_are_bad_syntax(body):
    verdict = answer(body)
    assert verdict.reason is Reason.BAD_SYNTAX
    assert "unexpected character" in verdict.detail


def test_code_injection_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    verdict = answer(f"__import__('os').system('touch {marker}')")
    assert verdict.reason is Reason.BAD_SYNTAX
    assert verdict.detail == "unexpected character '_' at position 0"
    assert not marker.exists()


@pytest.mark.parametrize(
    "body",
    [
        "1+1;import os",
        "(lambda: 6)()",
        "1+2+3 # comment",
        "1+2+3\nprint(1)",
        "6 if 1 else 2",
        "0x6",
        "1_000",
        "6.0",
        "1e3",
    ],
)
def test_python_syntax_outside_the_grammar_is_bad_syntax(body):
    assert answer(body).reason is Reason.BAD_SYNTAX


def test_very_long_digit_string_is_bad_syntax_without_int_conversion():
    verdict = answer("1" * 500)
    assert verdict.reason is Reason.BAD_SYNTAX
    assert "more than 9 digits" in verdict.detail


def test_detail_never_echoes_huge_input():
    huge_tail = "x" * 60_000
    for output in (huge_tail, f"<answer>{huge_tail}</answer>", f"<answer>1{huge_tail}</answer>"):
        assert len(verify_countdown(NUMBERS, TARGET, output).detail) <= MAX_DETAIL_CHARS


def test_many_tags_within_the_limit_are_fast():
    # The span starts after the opening tag nearest to the closing one.
    output = "<answer>" * 8000 + "1+2+3</answer>"
    start = time.perf_counter()
    assert verify_countdown(NUMBERS, TARGET, output).is_correct
    assert time.perf_counter() - start < 0.1
