"""The exhaustive solver: APR's operations, reachability, and solutions the verifier accepts."""
from __future__ import annotations

import itertools
import random

import pytest

from reasoning.countdown.solver import combine, is_solvable, reachable, solve
from reward import verify_countdown


def brute_force(numbers: list[int]) -> set[int]:
    """Reference: apply every step to every pair, recursively."""
    if len(numbers) == 1:
        return {numbers[0]}
    values: set[int] = set()
    for i, j in itertools.combinations(range(len(numbers)), 2):
        rest = [n for k, n in enumerate(numbers) if k not in (i, j)]
        for value, _ in combine(numbers[i], numbers[j]):
            values |= brute_force(rest + [value])
    return values


def test_combine_follows_apr_rules():
    # 12, 4: sum, product, non-negative difference, exact quotient.
    assert sorted(combine(4, 12)) == [(3, "/"), (8, "-"), (16, "+"), (48, "*")]
    assert (7 / 2) not in [v for v, _ in combine(7, 2)]  # inexact division is not a step
    assert [op for _, op in combine(5, 0)] == ["+", "*", "-"]  # no division by zero


def test_reachable_matches_brute_force():
    rng = random.Random(3)
    for _ in range(300):
        numbers = [rng.randint(0, 25) for _ in range(rng.randint(1, 4))]
        expected = brute_force(numbers)
        assert reachable(tuple(sorted(numbers))) == expected
        for target in range(0, 60):
            assert is_solvable(numbers, target) == (target in expected), (numbers, target)


@pytest.mark.parametrize(
    "numbers, target, solvable",
    [
        ([3, 5, 7, 2], 24, True),
        ([1, 3, 4, 6], 24, False),  # only 6/(1-3/4), which needs a fraction
        ([10], 10, True),
        ([0, 24], 0, True),  # 0 * 24
        ([2, 2], 1, True),  # 2 / 2
        ([50, 60, 70], 1, False),
    ],
)
def test_known_problems(numbers, target, solvable):
    assert is_solvable(numbers, target) is solvable
    assert (solve(numbers, target) is not None) is solvable


def test_solutions_verify():
    rng = random.Random(5)
    for _ in range(200):
        numbers = [rng.randint(1, 40) for _ in range(rng.randint(2, 4))]
        target = rng.randint(1, 100)
        expression = solve(numbers, target)
        if expression is None:
            assert not is_solvable(numbers, target)
            continue
        verdict = verify_countdown(numbers, target, f"<answer>{expression}</answer>")
        assert verdict.reward == 1.0, (numbers, target, expression, verdict)
