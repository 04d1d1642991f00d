"""The decoupled PPO objective (AReaL) with truncated importance weights, and k3 KL.

For each trained token with advantage A, current logprob log pi_theta, proximal logprob
log pi_prox (the learner's weights before this update) and behaviour logprob log pi_behav
(the possibly older weights that sampled it):

    ratio  = pi_theta / pi_prox
    weight = min(pi_prox / pi_behav, cap)            (no gradient; cap = truncation)
    loss   = -weight * min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)

With pi_prox = pi_behav (fresh data, staleness 0) the weight is 1 and this is plain PPO.
The optional KL to a reference policy uses the k3 estimator
exp(ref - logp) - (ref - logp) - 1, always >= 0. Token losses are averaged over all
trained tokens of the batch ("token_mean") or within each episode first and then over
episodes ("episode_mean").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PPOTerms:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    kl: torch.Tensor
    clip_fraction: float
    mean_importance_weight: float
    truncated_fraction: float


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def episode_mean(values: torch.Tensor, mask: torch.Tensor, episode_ids: torch.Tensor) -> torch.Tensor:
    """Mean over episodes of each episode's token mean (tokens of one episode share an id)."""
    num_episodes = int(episode_ids.max().item()) + 1
    sums = values.new_zeros(num_episodes).index_add(0, episode_ids, values * mask)
    counts = values.new_zeros(num_episodes).index_add(0, episode_ids, mask)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def decoupled_ppo_loss(
    logprobs: torch.Tensor,
    proximal_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    weight_cap: float = 5.0,
    reference_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    episode_ids: torch.Tensor | None = None,
) -> PPOTerms:
    """All tensors are flat per-token [N]; `mask` is 1.0 for trained tokens.

    `episode_ids` (int64 [N]) selects episode-mean normalisation; None is token-mean.
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - proximal_logprobs.detach())
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    surrogate = torch.minimum(ratio * advantages, clipped * advantages)
    raw_weight = torch.exp(proximal_logprobs - behaviour_logprobs).detach()
    weight = raw_weight.clamp(max=weight_cap)
    token_loss = -weight * surrogate
    kl = torch.zeros_like(token_loss)
    if reference_logprobs is not None and kl_coef > 0:
        delta = reference_logprobs.detach() - logprobs
        kl = torch.exp(delta) - delta - 1.0
    reduce = (lambda v: masked_mean(v, mask)) if episode_ids is None else (lambda v: episode_mean(v, mask, episode_ids))
    policy_loss = reduce(token_loss)
    kl_mean = reduce(kl)
    with torch.no_grad():
        was_clipped = ((ratio * advantages) > (clipped * advantages)).to(mask.dtype)
        clip_fraction = masked_mean(was_clipped, mask).item()
        mean_weight = masked_mean(weight, mask).item()
        truncated = masked_mean((raw_weight > weight_cap).to(mask.dtype), mask).item()
    return PPOTerms(policy_loss + kl_coef * kl_mean, policy_loss, kl_mean, clip_fraction, mean_weight, truncated)
