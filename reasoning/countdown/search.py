"""Best-first ordering of Countdown search steps: the teacher behind the SFT traces.

At every node the candidate steps (each pair of numbers, larger first, with each of
APR's operations) are ordered by a cheap heuristic, the distance from the target to the
closest number the step leaves, as SoS's heuristic searches do; ties are broken by a
seeded shuffle so traces vary. The search only ever sees the numbers and the target: it
has no oracle, so its traces backtrack the way a learned search has to.
"""
from __future__ import annotations

import random
from typing import Sequence

from reward.trace_steps import Step, make_step

OPERATORS = ("+", "*", "-", "/")


def candidate_steps(numbers: Sequence[int]) -> list[Step]:
    """Every allowed step from `numbers` (larger operand first), in a fixed order."""
    steps = []
    for i in range(len(numbers)):
        for j in range(i + 1, len(numbers)):
            hi, lo = (i, j) if numbers[i] >= numbers[j] else (j, i)
            for op in OPERATORS:
                if op == "/" and (numbers[lo] == 0 or numbers[hi] % numbers[lo]):
                    continue
                steps.append(make_step(numbers, hi, lo, op))
    return steps


def distance(step: Step, target: int) -> int:
    """The heuristic: how far the closest number left by `step` is from the target."""
    return min(abs(target - n) for n in step.left)


def ordered_steps(numbers: Sequence[int], target: int, rng: random.Random) -> list[Step]:
    """Candidate steps, most promising first (ties in seeded random order)."""
    steps = candidate_steps(numbers)
    rng.shuffle(steps)
    steps.sort(key=lambda step: distance(step, target))
    return steps
