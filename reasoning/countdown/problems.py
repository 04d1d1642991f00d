"""Countdown problems: drawing solvable problems by APR's rules, split into train and val.

Numbers are uniform in 1 .. max_number - 1 and the target uniform in
[target_min, target_max]; a draw that cannot be solved is thrown away and drawn again
(numbers and target together). Problems are distinct by their key, the sorted numbers
plus the target: the order of the numbers barely changes a solution, so two problems
with the same key count as the same problem. Validation problems are drawn first and no
training problem shares a key with one. The same config and seed give the same problems.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from reasoning.countdown.config import CountdownConfig
from reasoning.countdown.solver import is_solvable

Key = tuple[tuple[int, ...], int]

DRAWS_WITHOUT_NEW_PROBLEM_LIMIT = 1_000_000
"""Give up when this many draws in a row found no new distinct solvable problem."""


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    numbers: tuple[int, ...]
    target: int

    @property
    def key(self) -> Key:
        """Identity for dedupe and train/val separation: sorted numbers plus target."""
        return problem_key(self.numbers, self.target)


def problem_key(numbers: tuple[int, ...] | list[int], target: int) -> Key:
    return tuple(sorted(numbers)), target


class ProblemSpaceExhausted(ValueError):
    """The settings admit fewer distinct solvable problems than were asked for."""


def generate_problems(
    config: CountdownConfig, progress: Callable[[int], None] | None = None
) -> tuple[list[Problem], list[Problem]]:
    """Draw (train, val) problems for `config`; `progress(n)` is told each new problem."""
    rng = random.Random(config.seed)
    seen: set[Key] = set()
    val = _draw(config, rng, "val", config.num_val, seen, progress)
    train = _draw(config, rng, "train", config.num_train, seen, progress)
    return train, val


def _draw(
    config: CountdownConfig,
    rng: random.Random,
    split: str,
    count: int,
    seen: set[Key],
    progress: Callable[[int], None] | None,
) -> list[Problem]:
    problems: list[Problem] = []
    draws_since_new = 0
    while len(problems) < count:
        numbers = tuple(rng.randint(1, config.max_number - 1) for _ in range(config.numbers))
        target = rng.randint(config.target_min, config.target_max)
        key = problem_key(numbers, target)
        if key not in seen and is_solvable(numbers, target):
            seen.add(key)
            problems.append(Problem(f"{split}-{len(problems)}", numbers, target))
            draws_since_new = 0
            if progress is not None:
                progress(1)
            continue
        draws_since_new += 1
        if draws_since_new >= DRAWS_WITHOUT_NEW_PROBLEM_LIMIT:
            raise ProblemSpaceExhausted(
                f"found only {len(seen)} distinct solvable problems for these settings "
                f"({DRAWS_WITHOUT_NEW_PROBLEM_LIMIT:,} draws in a row found no new one) "
                f"while {config.num_val} val + {config.num_train} train were asked for; "
                "ask for fewer problems or widen the numbers or targets"
            )
    return problems
