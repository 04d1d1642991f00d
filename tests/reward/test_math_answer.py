"""Math answer verification: answer extraction, math-verify equivalence, bounded time.

One worker process serves the whole module (starting one costs about half a second);
the hostile-input tests replace it and check that it keeps working afterwards.
"""

import os
import signal
import threading
import time

import pytest

from reward.math_answer import (
    MAX_ANSWER_CHARS,
    MAX_OUTPUT_CHARS,
    MathVerifier,
    extract_answer,
    gold_answer,
    last_boxed,
    verify_math,
)
from reward.verdict import Reason

HOSTILE_TIMEOUT_S = 0.5
# Killing and reaping a stuck worker takes milliseconds; the rest is a loaded 2-core box.
MARGIN_S = 1.5


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(timeout_s=10.0) as v:
        yield v


# --- extraction: pure string work, no worker -------------------------------------


def test_last_boxed_takes_the_last_balanced_box():
    assert last_boxed(r"first \boxed{1}, finally \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"  # escaped braces are not counted
    assert last_boxed(r"\boxed{x^{2}} and \boxed{3") is None  # the last box never closes
    assert last_boxed("no box here") is None


def test_gold_answer_reads_gsm8k_marker_then_box_then_whole():
    assert gold_answer("She has 24 + 48 = 72.\n#### 72") == "72"
    assert gold_answer(r"So the sum is $\boxed{\frac{14}{3}}$.") == r"\frac{14}{3}"
    assert gold_answer(r" \sqrt{2} ") == r"\sqrt{2}"


def test_answer_tag_is_preferred_over_boxed():
    output = r"Maybe \boxed{3}. <answer>4</answer> and later \boxed{5}"
    assert extract_answer(output) == ("4", "answer tag")
    assert extract_answer(r"<answer>so \boxed{7}</answer>") == ("7", "answer tag")
    assert extract_answer(r"I get \boxed{3}.") == ("3", "boxed")
    assert extract_answer("The final answer is 12.") == ("The final answer is 12.", "tail")


# --- verdicts from math-verify ------------------------------------------------------


@pytest.mark.parametrize(
    "gold, output",
    [
        (r"\frac{1}{2}", r"\boxed{0.5}"),
        ("0.5", r"\boxed{\frac{1}{2}}"),
        ("3", r"\boxed{3.0}"),
        (r"\pi/2", r"The angle is \boxed{\frac{\pi}{2}}."),
        ("(1, 2)", r"\boxed{(1,2)}"),
        (r"3\pi", r"\boxed{3 \pi}"),
        (r"\sqrt{2}", r"\boxed{2^{1/2}}"),
        ("Maria earns 14 * 35 = 490 a week.\n#### 1960", r"\boxed{1,960}"),  # GSM8K gold
        ("#### 12", "So she has 12 muffins left. The final answer is 12."),  # prose tail
        ("4", r"\boxed{3} is wrong; <answer>4</answer>"),  # the tag wins over the box
    ],
)
def test_equivalent_answers_are_correct(verifier, gold, output):
    verdict = verifier.verify(gold, output)
    assert verdict.reason is Reason.CORRECT, verdict
    assert verdict.reward == 1.0


@pytest.mark.parametrize(
    "gold, output",
    [
        (r"\frac{1}{2}", r"\boxed{0.50001}"),  # beyond math-verify's rounding to 6 places
        ("(1, 2)", r"\boxed{(2, 1)}"),  # an ordered pair, not a set
        ("#### 72", r"\boxed{71}"),
        ("3", r"<answer>4</answer> although \boxed{3}"),  # the tag is the answer, and wrong
    ],
)
def test_different_values_are_wrong(verifier, gold, output):
    verdict = verifier.verify(gold, output)
    assert verdict.reason is Reason.WRONG_VALUE, verdict
    assert verdict.reward == 0.0


@pytest.mark.parametrize("output", ["I do not know.", r"\boxed{}", "<answer>  </answer>", ""])
def test_missing_answer_is_no_answer(verifier, output):
    assert verifier.verify("3", output).reason is Reason.NO_ANSWER


def test_too_long_output_is_rejected_without_the_worker(verifier):
    pid = verifier.worker_pid
    verdict = verifier.verify("1", "1" * (MAX_OUTPUT_CHARS + 1))
    assert verdict.reason is Reason.TOO_LONG
    assert str(MAX_OUTPUT_CHARS) in verdict.detail
    long_answer = r"\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}"
    assert verifier.verify("1", long_answer).reason is Reason.TOO_LONG
    assert verifier.worker_pid == pid


def test_empty_gold_is_a_bad_record(verifier):
    assert verifier.verify("#### ", r"\boxed{3}").reason is Reason.BAD_RECORD


# --- bounded time and the worker's life ---------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        r"\boxed{9^{9^{9^{9}}}}",  # sympy tries to evaluate the tower while comparing
        r"\boxed{" + "{" * 300 + "1" + "}" * 300 + "}",  # parsing takes ~4 s
    ],
    ids=["power-tower", "nested-braces"],
)
def test_hostile_answer_returns_in_time_and_worker_recovers(verifier, output):
    restarts, pid = verifier.num_restarts, verifier.worker_pid
    start = time.monotonic()
    verdict = verifier.verify("3", output, timeout_s=HOSTILE_TIMEOUT_S)
    elapsed = time.monotonic() - start
    assert elapsed < HOSTILE_TIMEOUT_S + MARGIN_S
    assert verdict.reward == 0.0
    assert verdict.reason is Reason.TIMEOUT, verdict
    assert (verifier.num_restarts, verifier.worker_pid != pid) == (restarts + 1, True)
    assert verifier.verify("3", r"\boxed{3}").is_correct  # the new worker verifies


def test_worker_killed_between_calls_is_replaced(verifier):
    os.kill(verifier.worker_pid, signal.SIGKILL)
    time.sleep(0.05)
    assert verifier.verify(r"\frac{1}{2}", r"\boxed{0.5}").is_correct


def test_worker_dying_mid_answer_gives_a_failure_not_an_exception(verifier):
    verifier.verify("1", r"\boxed{1}")  # make sure the worker is up before aiming at it
    killer = threading.Timer(0.2, os.kill, (verifier.worker_pid, signal.SIGKILL))
    killer.start()
    verdict = verifier.verify("3", r"\boxed{9^{9^{9^{9}}}}", timeout_s=10.0)
    killer.join()
    assert verdict.reason is Reason.BAD_SYNTAX
    assert "crash" in verdict.detail
    assert verifier.verify("3", r"\boxed{3}").is_correct


def test_closed_verifier_refuses_work_and_close_is_idempotent():
    v = MathVerifier(timeout_s=1.0)
    v.close()
    v.close()
    assert v.worker_pid is None
    with pytest.raises(RuntimeError, match="closed"):
        v.verify("1", r"\boxed{1}")


def test_timeout_must_be_positive(verifier):
    with pytest.raises(ValueError, match="timeout_s"):
        MathVerifier(timeout_s=0)
    with pytest.raises(ValueError, match="timeout_s"):
        verifier.verify("1", r"\boxed{1}", timeout_s=-1.0)


def test_verify_math_convenience_function():
    assert verify_math("#### 72", r"so she has \boxed{72} apples").is_correct
    assert verify_math("#### 72", r"so she has \boxed{27} apples").reason is Reason.WRONG_VALUE
