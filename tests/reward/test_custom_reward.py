"""A user's reward function by import path: verdicts, failures counted, bounded time, bad specs.

The hostile functions are examples/hostile_rewards.py; the other return values come from
a module written to a temporary working directory, which also checks that the worker
finds modules there (as `treadle train` run from a user's project must).
"""

import math
import os
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from reward.custom_reward import CustomReward, check_reward_function, parse_reward_spec
from reward.verdict import MAX_DETAIL_CHARS, Reason
from reward.worker import WorkerStartError

TIMEOUT_S = 0.5
# Killing and reaping a stuck worker takes milliseconds; the rest is a loaded 2-core box.
MARGIN_S = 2.0
ROW = {"answer": 72, "nested": {"xs": [1, 0.75, None, "a"], "ok": True}}

USER_MODULE = """
import os
import time

CASES = {
    "half": 0.5,
    "one": 1,
    "negative": -2.0,
    "above": 1.5,
    "tuple": (0.25, "close"),
    "long reason": (0.0, "x" * 10_000),
    "inf": float("-inf"),
    "huge int": 10**400,
    "bool": True,
    "none": None,
    "triple": (1.0, "a", "b"),
    "int reason": (1.0, 3),
    "str reward": ("1", "a"),
}


def table(row, output):
    if output == "hang":
        time.sleep(1e9)
    return CASES[output]


def row_value(row, output):
    return row["nested"]["xs"][1], f"answer {row['answer']}"


def exits(row, output):
    os._exit(3)


def exits_quietly(row, output):
    raise SystemExit(0)


NOT_CALLABLE = 3
"""


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A working directory holding user_rewards.py, as a user's project would."""
    directory = tmp_path_factory.mktemp("project")
    (directory / "user_rewards.py").write_text(textwrap.dedent(USER_MODULE))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        yield directory


@pytest.fixture(scope="module")
def table(user_dir):
    with CustomReward("user_rewards:table", timeout_s=5.0) as reward:
        yield reward


# --- what a working function returns ------------------------------------------------


@pytest.mark.parametrize(
    "case, reward, reason, detail",
    [
        ("half", 0.5, Reason.SCORED, ""),
        ("one", 1.0, Reason.CORRECT, ""),
        ("negative", -2.0, Reason.SCORED, ""),
        ("above", 1.5, Reason.CORRECT, ""),  # the user's reward is kept, not forced to 1.0
        ("tuple", 0.25, Reason.SCORED, "close"),
    ],
)
def test_numbers_and_tuples_become_rewards(table, case, reward, reason, detail):
    verdict = table.score(ROW, case)
    assert (verdict.reward, verdict.reason, verdict.detail) == (reward, reason, detail)
    assert type(verdict.reward) is float


def test_calls_from_several_threads_are_served(table):
    cases = ["half", "tuple", "one", "negative"] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        rewards = list(pool.map(lambda case: table.score(ROW, case).reward, cases))
    assert rewards == [0.5, 0.25, 1.0, -2.0] * 4


def test_long_reason_is_clipped(table):
    verdict = table.score(ROW, "long reason")
    assert verdict.reason is Reason.SCORED and len(verdict.detail) == MAX_DETAIL_CHARS


def test_correct_at_sets_the_mark(user_dir):
    with CustomReward("user_rewards:table", correct_at=0.5) as reward:
        assert reward.score(ROW, "half").reason is Reason.CORRECT
        assert reward.score(ROW, "tuple").reason is Reason.SCORED


def test_rows_carry_json_values_and_modules_in_the_working_directory_are_found(user_dir):
    with CustomReward("user_rewards:row_value") as reward:
        verdict = reward.score(ROW, "x" * 100_000)
    assert (verdict.reward, verdict.reason, verdict.detail) == (0.75, Reason.SCORED, "answer 72")


def test_example_reward_function():
    with CustomReward("examples.custom_reward:reward") as reward:
        assert reward.score({"answer": 72}, "so 24 + 48 = 72").reason is Reason.CORRECT
        verdict = reward.score({"answer": 72}, "so 24 + 48 = 71")
    assert (verdict.reward, verdict.reason, verdict.detail) == (0.0, Reason.SCORED, "wrong: 71 is not 72")


# --- failures: reward 0.0, a reason, a count ----------------------------------------


@pytest.mark.parametrize(
    "case, kind, detail",
    [
        ("inf", "non_finite", "returned -inf"),
        ("huge int", "non_finite", "returned int beyond float range"),
        ("bool", "non_number", "returned bool"),
        ("none", "non_number", "returned NoneType"),
        ("triple", "bad_tuple", "returned a tuple of 3 items, not (reward, str)"),
        ("int reason", "bad_tuple", "returned a reason of type int, not str"),
        ("str reward", "bad_tuple", "returned a reward of type str in its tuple"),
    ],
)
def test_bad_return_values_give_zero_and_are_counted(table, case, kind, detail):
    before = table.failures[kind]
    verdict = table.score(ROW, case)
    assert (verdict.reward, verdict.reason, verdict.detail) == (0.0, Reason.REWARD_ERROR, detail)
    assert table.failures[kind] == before + 1


@pytest.mark.parametrize(
    "function, kind, detail",
    [
        ("raises", "raised", "raised ValueError: cannot score 'the output'"),
        ("returns_nan", "non_finite", "returned nan"),
        ("returns_str", "non_number", "returned str"),
    ],
)
def test_hostile_functions_give_zero_and_are_counted(function, kind, detail):
    with CustomReward(f"examples.hostile_rewards:{function}", timeout_s=TIMEOUT_S) as reward:
        verdict = reward.score(ROW, "the output")
        assert (verdict.reward, verdict.reason, verdict.detail) == (0.0, Reason.REWARD_ERROR, detail)
        assert reward.failures == {kind: 1}
        assert reward.score(ROW, "again").reason is Reason.REWARD_ERROR  # the same worker goes on
        assert (reward.failures[kind], reward.num_restarts) == (2, 0)


def test_hanging_function_is_bounded_and_the_worker_replaced():
    with CustomReward("examples.hostile_rewards:hangs", timeout_s=TIMEOUT_S) as reward:
        reward.score(ROW, "warm up")  # the first call also waits for the worker to start
        pid = reward.worker_pid
        start = time.monotonic()
        verdict = reward.score(ROW, "the output")
        elapsed = time.monotonic() - start
        assert elapsed < TIMEOUT_S + MARGIN_S
        assert (verdict.reward, verdict.reason) == (0.0, Reason.TIMEOUT)
        assert "0.5 s" in verdict.detail
        assert (reward.failures["timeout"], reward.num_restarts) == (2, 2)
        assert reward.worker_pid != pid
        with pytest.raises(ProcessLookupError):  # the stuck worker is gone
            os.kill(pid, 0)


def test_next_call_after_a_timeout_is_served_by_a_new_worker(user_dir):
    with CustomReward("user_rewards:table", timeout_s=TIMEOUT_S) as reward:
        assert reward.score(ROW, "half").reward == 0.5
        pid = reward.worker_pid
        assert reward.score(ROW, "hang").reason is Reason.TIMEOUT
        assert reward.score(ROW, "half").reward == 0.5
        assert (reward.num_restarts, reward.worker_pid != pid) == (1, True)


@pytest.mark.parametrize("function", ["exits", "exits_quietly"])
def test_function_ending_the_worker_is_a_reward_error(user_dir, function):
    with CustomReward(f"user_rewards:{function}") as reward:
        verdict = reward.score(ROW, "x")
        assert (verdict.reward, verdict.reason) == (0.0, Reason.REWARD_ERROR)
        assert reward.score(ROW, "x").reason is Reason.REWARD_ERROR  # and again, alive
    expected = {"exits": ("crash", "exit code 3"), "exits_quietly": ("raised", "raised SystemExit: 0")}
    kind, detail = expected[function]
    assert reward.failures == {kind: 2} and detail in verdict.detail


def test_too_long_output_is_refused_without_a_call(table):
    from reward.custom_reward import MAX_OUTPUT_CHARS

    verdict = table.score(ROW, "x" * (MAX_OUTPUT_CHARS + 1))
    assert (verdict.reward, verdict.reason) == (0.0, Reason.TOO_LONG)
    assert table.failures["too_long"] >= 1


def test_closed_reward_refuses_work_and_close_is_idempotent():
    reward = CustomReward("examples.hostile_rewards:returns_nan")
    reward.close()
    reward.close()
    assert reward.worker_pid is None
    with pytest.raises(RuntimeError, match="closed"):
        reward.score(ROW, "x")


# --- specs: refused with messages naming them -----------------------------------------


@pytest.mark.parametrize("spec", ["nomodule", "a:b:c", "a b:c", "mod:", ":f", "mod:f()", "mod.:f"])
def test_malformed_specs_are_refused(spec):
    with pytest.raises(ValueError, match="package.module:function") as error:
        parse_reward_spec(spec)
    assert repr(spec) in str(error.value)


def test_parse_reward_spec_splits_module_and_function():
    assert parse_reward_spec("examples.custom_reward:reward") == ("examples.custom_reward", "reward")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nomodule", "not of the form"),
        ("x:y", "cannot import 'x': ModuleNotFoundError"),
        ("treadle_no_such_module:y", "cannot import 'treadle_no_such_module': ModuleNotFoundError"),
        ("examples.custom_reward:no_such_function", "has no attribute 'no_such_function'"),
        ("os:path", "is a module, not callable"),
    ],
)
def test_check_reward_function_refuses_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        check_reward_function(spec)
    assert repr(spec) in str(error.value)


def test_check_reward_function_accepts_good_specs_and_the_working_directory(user_dir):
    check_reward_function("examples.custom_reward:reward")
    check_reward_function("user_rewards:table")
    with pytest.raises(ValueError, match="not callable"):
        check_reward_function("user_rewards:NOT_CALLABLE")


def test_worker_failing_to_import_raises_at_the_first_call():
    with CustomReward("treadle_no_such_module:y") as reward:
        with pytest.raises(WorkerStartError, match="cannot import 'treadle_no_such_module'"):
            reward.score(ROW, "x")


def test_constructor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="nomodule"):
        CustomReward("nomodule")
    with pytest.raises(ValueError, match="timeout_s"):
        CustomReward("examples.custom_reward:reward", timeout_s=0)
    with pytest.raises(ValueError, match="correct_at"):
        CustomReward("examples.custom_reward:reward", correct_at=math.nan)
