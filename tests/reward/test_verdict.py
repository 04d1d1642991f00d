"""Verdict constructors and the on-disk form of Reason."""

import json

import pytest

from reward.verdict import MAX_DETAIL_CHARS, Reason, Verdict


def test_correct_has_full_reward():
    verdict = Verdict.correct()
    assert (verdict.reward, verdict.reason, verdict.is_correct) == (1.0, Reason.CORRECT, True)


def test_fail_has_zero_reward_and_keeps_detail():
    verdict = Verdict.fail(Reason.WRONG_VALUE, "evaluates to 17/3, target 24")
    assert verdict.reward == 0.0
    assert not verdict.is_correct
    assert verdict.detail == "evaluates to 17/3, target 24"


def test_fail_refuses_correct_reason():
    with pytest.raises(AssertionError):
        Verdict.fail(Reason.CORRECT)


def test_detail_is_clipped():
    verdict = Verdict.fail(Reason.BAD_SYNTAX, "x" * 10_000)
    assert len(verdict.detail) == MAX_DETAIL_CHARS
    assert verdict.detail.endswith("...")


def test_reason_serialises_as_its_value():
    # `treadle verify` writes reasons into JSONL; they must be the plain strings.
    assert json.dumps({"reason": Reason.DIVISION_BY_ZERO}) == '{"reason": "division_by_zero"}'
    assert str(Reason.NO_ANSWER) == "no_answer"
    assert f"{Reason.TOO_LONG}" == "too_long"
    assert {reason.value for reason in Reason} == {
        "correct",
        "no_answer",
        "bad_syntax",
        "wrong_numbers",
        "wrong_value",
        "division_by_zero",
        "bad_step",
        "too_long",
        "bad_record",
        "timeout",
        "scored",
        "reward_error",
    }
