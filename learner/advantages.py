"""Group advantages: GRPO, Dr.GRPO and RLOO over the k episodes of one problem.

Each function takes the rewards of one group (the k episodes sampled for one problem)
and returns one advantage per episode; the learner broadcasts an episode's advantage to
every trained token of every thread in it (APR). Degenerate groups give zeros: a group
of one has no baseline, and a group whose rewards are all equal carries no signal.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

GRPO_EPS = 1e-6


def grpo(rewards: Sequence[float]) -> np.ndarray:
    """(r - mean) / (std + eps), std over the group (population std, as in DeepSeekMath)."""
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) < 2:
        return np.zeros_like(r)
    return (r - r.mean()) / (r.std() + GRPO_EPS)


def dr_grpo(rewards: Sequence[float]) -> np.ndarray:
    """r - mean: Dr.GRPO drops the std normalisation, which favours easy and hard groups."""
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) < 2:
        return np.zeros_like(r)
    return r - r.mean()


def rloo(rewards: Sequence[float]) -> np.ndarray:
    """r_i - mean of the other k - 1 rewards (REINFORCE leave-one-out)."""
    r = np.asarray(rewards, dtype=np.float64)
    k = len(r)
    if k < 2:
        return np.zeros_like(r)
    return r - (r.sum() - r) / (k - 1)


ESTIMATORS = {"grpo": grpo, "dr_grpo": dr_grpo, "rloo": rloo}


def parallelization_bonus(
    rewards: Sequence[float], total_tokens: Sequence[int], critical_path_tokens: Sequence[int], weight: float
) -> np.ndarray:
    """ThreadWeaver-style shaping: correct episodes earn `weight * (1 - critical/total)`.

    The ratio is 0 for a sequential episode and approaches 1 as more of the work runs in
    parallel; incorrect episodes earn nothing, so parallelism is never rewarded for itself.
    """
    r = np.asarray(rewards, dtype=np.float64)
    total = np.maximum(np.asarray(total_tokens, dtype=np.float64), 1.0)
    ratio = 1.0 - np.asarray(critical_path_tokens, dtype=np.float64) / total
    return np.where(r > 0, weight * np.clip(ratio, 0.0, 1.0), 0.0)
