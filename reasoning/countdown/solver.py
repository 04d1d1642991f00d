"""Exhaustive Countdown solving under APR's rules, for generating and checking problems.

Two numbers combine into a + b, a * b, |a - b| (subtraction never goes negative) or an
exact quotient; a problem is solvable when some order of such steps that uses every
number ends at the target. `is_solvable` answers by looking the target up in the cached
sets of values reachable from the multisets left after one step; `solve` returns one
solution as an `<answer>` expression that the verifier in `reward/` accepts.
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

Multiset = tuple[int, ...]  # sorted


def combine(a: int, b: int) -> Iterator[tuple[int, str]]:
    """The values one step can make from a and b, each with its operator (larger first)."""
    hi, lo = (a, b) if a >= b else (b, a)
    yield hi + lo, "+"
    yield hi * lo, "*"
    yield hi - lo, "-"
    if lo != 0 and hi % lo == 0:
        yield hi // lo, "/"


def _halves(numbers: Multiset) -> Iterator[tuple[Multiset, Multiset]]:
    """Each split of a multiset into two non-empty parts, once (the first number goes left)."""
    n = len(numbers)
    seen: set[Multiset] = set()
    for mask in range(1 << (n - 1)):
        left = (numbers[0],) + tuple(numbers[i + 1] for i in range(n - 1) if mask >> i & 1)
        if len(left) == n or left in seen:
            continue
        seen.add(left)
        right = tuple(numbers[i + 1] for i in range(n - 1) if not mask >> i & 1)
        yield left, right


@functools.lru_cache(maxsize=400_000)
def reachable(numbers: Multiset) -> frozenset[int]:
    """All final values that use every number of a sorted multiset.

    The last step of any solution splits the numbers in two groups, so the values are
    the combinations of one value reachable from each half.
    """
    if len(numbers) == 1:
        return frozenset(numbers)
    values: set[int] = set()
    for left, right in _halves(numbers):
        for x in reachable(left):
            for y in reachable(right):
                values.update(value for value, _ in combine(x, y))
    return frozenset(values)


def _operands_for(target: int, x: int) -> Iterator[int]:
    """Every y such that one step on (x, y) can give `target`."""
    yield target - x  # x + y
    yield x + target  # |x - y| with y > x
    yield x - target  # |x - y| with y < x
    yield target * x  # y / x
    if x != 0 and target % x == 0:
        yield target // x  # x * y
    if target != 0 and x % target == 0:
        yield x // target  # x / y


def is_solvable(numbers: Sequence[int], target: int) -> bool:
    """Whether `target` can be made from all `numbers` under APR's rules.

    For each split of the numbers, walks the smaller half's values and asks whether the
    larger half can reach an operand that completes the target: set lookups instead of
    building the full set of the whole multiset.
    """
    key = tuple(sorted(numbers))
    if len(key) == 1:
        return key[0] == target
    for left, right in _halves(key):
        small, large = (left, right) if len(left) <= len(right) else (right, left)
        large_values = reachable(large)
        for x in reachable(small):
            if x == 0 and target == 0:
                return True  # 0 * y
            for y in _operands_for(target, x):
                if y >= 0 and y in large_values and any(v == target for v, _ in combine(x, y)):
                    return True
    return False


def solve(numbers: Sequence[int], target: int) -> str | None:
    """One solution as an infix expression over `numbers`, or None if there is none."""
    terms = [(n, str(n)) for n in numbers]
    return _search(terms, target)


def _search(terms: list[tuple[int, str]], target: int) -> str | None:
    if len(terms) == 1:
        return terms[0][1] if terms[0][0] == target else None
    if target not in reachable(tuple(sorted(v for v, _ in terms))):
        return None
    for i in range(len(terms)):
        for j in range(i + 1, len(terms)):
            (a, ea), (b, eb) = terms[i], terms[j]
            if a < b:
                (a, ea), (b, eb) = (b, eb), (a, ea)
            rest = terms[:i] + terms[i + 1 : j] + terms[j + 1 :]
            for value, op in combine(a, b):
                found = _search(rest + [(value, f"({ea}{op}{eb})")], target)
                if found is not None:
                    return found[1:-1] if found.startswith("(") and len(rest) == 0 else found
    return None
