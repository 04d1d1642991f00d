"""CISPO (MiniMax-M1, 2025): REINFORCE weighted by a clipped, stop-gradient importance ratio.

    ratio = pi_theta / pi_prox
    loss  = -sg(clip(ratio, 1 - eps_low, 1 + eps_high)) * A * log pi_theta

Unlike PPO, no token's gradient is ever zeroed by the clip: the clip bounds the
coefficient, and every token (the rare "However", "Wait" forks PPO clips away after the
first update) keeps pushing with a bounded weight. MiniMax sets no lower bound (eps_low
large: here 1.0, so the weight is >= 0) and tunes eps_high. On a step's only update
pi_theta = pi_prox, the ratio is 1 and the loss is plain REINFORCE, -A * log pi_theta,
whose value (unlike PPO's) is not near -A; only its gradient matters. Staleness is
corrected by the off-policy weight (learner/off_policy.py), as for every loss; token-level
normalization ("token_mean") is MiniMax's 1 / sum_i |o_i|.
"""
from __future__ import annotations

import torch

from learner.loss_terms import Surrogate


def cispo_surrogate(
    logprobs: torch.Tensor,
    proximal_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float = 1.0,
    clip_high: float = 0.28,
) -> Surrogate:
    """Per-token [N] CISPO loss; `clipped` marks tokens whose ratio was outside the band."""
    ratio = torch.exp(logprobs - proximal_logprobs.detach()).detach()
    coefficient = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    return Surrogate(-coefficient * advantages * logprobs, (coefficient != ratio).to(logprobs.dtype))
