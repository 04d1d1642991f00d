"""The Countdown rule that an answer uses every given number exactly once.

Numbers are compared as multisets: the same values with the same counts, in any order,
and nothing else. Both answer formats (the `<answer>` expression and, later, the search
trace) apply this rule to the literals they read, so it lives here on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def number_mismatch(used: Sequence[int], given: Sequence[int]) -> str | None:
    """None if `used` and `given` are the same multiset, else what differs.

    The description lists each differing value once, smallest first, e.g.
    "3 missing; 8 not given; 2 used 2 times, given 1" (callers clip it for logs).
    """
    used_counts, given_counts = Counter(used), Counter(given)
    if used_counts == given_counts:
        return None
    problems = []
    for value in sorted(used_counts.keys() | given_counts.keys()):
        num_used, num_given = used_counts[value], given_counts[value]
        if num_used == num_given:
            continue
        if num_used == 0:
            problems.append(f"{value} missing")
        elif num_given == 0:
            problems.append(f"{value} not given")
        else:
            problems.append(f"{value} used {num_used} times, given {num_given}")
    return "; ".join(problems)
