"""Reward functions that misbehave, one way each: treadle's tests check that each gives
reward 0.0 with a reason and that the caller lives on (tests/reward/test_custom_reward.py).
"""

import time


def raises(row: dict, output: str) -> float:
    raise ValueError(f"cannot score {output[:20]!r}")


def hangs(row: dict, output: str) -> float:
    time.sleep(1e9)
    return 1.0


def returns_nan(row: dict, output: str) -> float:
    return float("nan")


def returns_str(row: dict, output: str) -> str:
    return "1.0"


def by_row(row: dict, output: str):
    """Misbehaves as the row's `hostility` column says (raises, hangs, nan, str), else
    scores like examples.custom_reward: one training run meets every failure."""
    behaviour = {"raises": raises, "hangs": hangs, "nan": returns_nan, "str": returns_str}.get(row.get("hostility"))
    if behaviour is not None:
        return behaviour(row, output)
    from examples.custom_reward import reward

    return reward(row, output)
