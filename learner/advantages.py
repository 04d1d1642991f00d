"""Group advantages over the k episodes of one problem, and REINFORCE++'s batch normalisation.

Each estimator takes the rewards of one group (the k episodes sampled for one problem)
and returns one advantage per episode; the learner broadcasts an episode's advantage to
every trained token of every thread in it (APR):

- grpo: (r - mean) / (std + eps);
- dr_grpo: r - mean (Dr.GRPO drops the std);
- rloo: r - mean of the other k - 1 rewards;
- reinforce_pp: r itself (REINFORCE++, no baseline);
- reinforce_pp_baseline: r - mean (REINFORCE++-baseline, as OpenRLHF's `reinforce_baseline`).
The two REINFORCE++ estimators are then normalised over the whole batch
(`batch_normalize`), which is what makes them REINFORCE++ rather than REINFORCE.

Conventions a researcher can match (`GroupConventions`, today's behaviour the default):
- `std`: "population" (DeepSeekMath, today) or "sample" (Bessel-corrected, as verl's
  `torch.std`); only grpo reads it.
- `singleton`: what a group of one gets. "zero" (today): it has no baseline, so no
  signal. "reward": the raw reward, as verl does (its group of one has mean 0 and std 1;
  grpo divides by 1 + eps, so the figure is r / (1 + 1e-6), equal to r to float32 precision).
A group whose rewards are all equal gives zeros under every estimator with a baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

GRPO_EPS = 1e-6
BATCH_VAR_FLOOR = 1e-8  # OpenRLHF clamps the batch variance here before its rsqrt


@dataclass(frozen=True)
class GroupConventions:
    std: str = "population"
    """grpo's std: population (divide by k) or sample (by k - 1, Bessel)."""
    singleton: str = "zero"
    """A group of one: zero advantage, or its raw reward (verl)."""


DEFAULT = GroupConventions()


def grpo(rewards: Sequence[float], conventions: GroupConventions = DEFAULT) -> np.ndarray:
    """(r - mean) / (std + eps), std over the group (population std, as in DeepSeekMath,
    or the sample std with `conventions.std` "sample")."""
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) < 2:
        return _singleton(r, conventions) / (1.0 + GRPO_EPS)
    return (r - r.mean()) / (r.std(ddof=1 if conventions.std == "sample" else 0) + GRPO_EPS)


def dr_grpo(rewards: Sequence[float], conventions: GroupConventions = DEFAULT) -> np.ndarray:
    """r - mean: Dr.GRPO drops the std normalisation, which favours easy and hard groups."""
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) < 2:
        return _singleton(r, conventions)
    return r - r.mean()


def rloo(rewards: Sequence[float], conventions: GroupConventions = DEFAULT) -> np.ndarray:
    """r_i - mean of the other k - 1 rewards (REINFORCE leave-one-out)."""
    r = np.asarray(rewards, dtype=np.float64)
    k = len(r)
    if k < 2:
        return _singleton(r, conventions)
    return r - (r.sum() - r) / (k - 1)


def reinforce_pp(rewards: Sequence[float], conventions: GroupConventions = DEFAULT) -> np.ndarray:
    """The reward itself: REINFORCE++ has no baseline (the batch normalisation centres it)."""
    return np.asarray(rewards, dtype=np.float64).copy()


def reinforce_pp_baseline(rewards: Sequence[float], conventions: GroupConventions = DEFAULT) -> np.ndarray:
    """r - group mean, no std (REINFORCE++-baseline); batch-normalised afterwards."""
    return dr_grpo(rewards, conventions)


def _singleton(r: np.ndarray, conventions: GroupConventions) -> np.ndarray:
    return r.copy() if conventions.singleton == "reward" else np.zeros_like(r)


ESTIMATORS = {
    "grpo": grpo, "dr_grpo": dr_grpo, "rloo": rloo,
    "reinforce_pp": reinforce_pp, "reinforce_pp_baseline": reinforce_pp_baseline,
}  # fmt: skip
BATCH_NORMALIZED = frozenset({"reinforce_pp", "reinforce_pp_baseline"})


def batch_normalize(advantages: Sequence[float], num_tokens: Sequence[int]) -> np.ndarray:
    """(A - mean) / std over every trained token of the batch (REINFORCE++, as OpenRLHF):
    an episode counts once per trained token, so mean and (population) variance are
    token-weighted; the variance is floored at 1e-8, so an all-equal batch gives zeros.
    Episodes without trained tokens get an advantage that nothing reads."""
    a = np.asarray(advantages, dtype=np.float64)
    n = np.asarray(num_tokens, dtype=np.float64)
    total = max(n.sum(), 1.0)
    mean = (a * n).sum() / total
    var = ((a - mean) ** 2 * n).sum() / total
    return (a - mean) / np.sqrt(max(var, BATCH_VAR_FLOOR))


def parallelization_bonus(
    rewards: Sequence[float],
    total_tokens: Sequence[int],
    critical_path_tokens: Sequence[int],
    weight: float,
    cap: float = 1.0,
) -> np.ndarray:
    """ThreadWeaver-style shaping: correct episodes earn `weight * min(1 - critical/total, cap)`.

    The ratio is 0 for a sequential episode and approaches 1 as more of the work runs in
    parallel; incorrect episodes earn nothing, so parallelism is never rewarded for itself.
    The cap bounds what splitting into ever more threads can earn.
    """
    r = np.asarray(rewards, dtype=np.float64)
    total = np.maximum(np.asarray(total_tokens, dtype=np.float64), 1.0)
    ratio = 1.0 - np.asarray(critical_path_tokens, dtype=np.float64) / total
    return np.where(r > 0, weight * np.clip(ratio, 0.0, cap), 0.0)


def overlong_penalty(lengths: Sequence[int], max_tokens: int, buffer: int, factor: float = 1.0) -> np.ndarray:
    """DAPO's soft overlong punishment: 0 up to max - buffer tokens, then falling linearly
    to -factor at `max_tokens` (and staying there beyond it):
    factor * clip(((max - buffer) - len) / buffer, -1, 0). `buffer` 0 is off."""
    n = np.asarray(lengths, dtype=np.float64)
    if buffer <= 0:
        return np.zeros_like(n)
    return factor * np.clip(((max_tokens - buffer) - n) / buffer, -1.0, 0.0)
