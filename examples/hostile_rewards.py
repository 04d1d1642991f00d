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
