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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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
    token_weights: torch.Tensor | None = None,
) -> PPOTerms:
    """All tensors are flat per-token [N]; `mask` is 1.0 for trained tokens.

    `episode_ids` (int64 [N]) selects episode-mean normalisation; None is token-mean.
    `token_weights` (from `normalization_weights`, 0 off the mask) replaces both: every
    term is then the weighted sum, which is the normalized mean when the weights cover the
    whole batch and one rank's share of it when they cover its shard (data parallelism).
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
    if token_weights is not None:
        reduce = lambda v: (v * token_weights).sum()  # noqa: E731
    elif episode_ids is None:
        reduce = lambda v: masked_mean(v, mask)  # noqa: E731
    else:
        reduce = lambda v: episode_mean(v, mask, episode_ids)  # noqa: E731
    policy_loss = reduce(token_loss)
    kl_mean = reduce(kl)
    share = (lambda v: (v * token_weights).sum()) if token_weights is not None else (lambda v: masked_mean(v, mask))  # noqa: E731
    with torch.no_grad():
        was_clipped = ((ratio * advantages) > (clipped * advantages)).to(mask.dtype)
        clip_fraction = share(was_clipped).item()
        mean_weight = share(weight).item()
        truncated = share((raw_weight > weight_cap).to(mask.dtype)).item()
    return PPOTerms(policy_loss + kl_coef * kl_mean, policy_loss, kl_mean, clip_fraction, mean_weight, truncated)


def normalization_weights(
    loss_masks: Sequence[np.ndarray], episode_index: Sequence[np.ndarray], normalization: str
) -> list[np.ndarray]:
    """Per-token loss weights over several micro-batches (aligned arrays, any shape) that sum
    to 1 over all of them: token_mean gives every trained token 1 / T; episode_mean gives a
    token of episode e 1 / (E * T_e), with E episodes present and T_e trained tokens of e.
    Summing weighted token losses over any split of the micro-batches and adding the parts
    gives the normalized loss of the whole."""
    if normalization == "token_mean":
        total = max(sum(float(m.sum()) for m in loss_masks), 1.0)
        return [m.astype(np.float32) / np.float32(total) for m in loss_masks]
    if normalization != "episode_mean":
        raise ValueError(f"normalization {normalization!r}: choose token_mean or episode_mean")
    counts: dict[int, float] = {}
    for m, e in zip(loss_masks, episode_index):
        for episode, n in zip(*np.unique(e[m > 0], return_counts=True)):
            counts[int(episode)] = counts.get(int(episode), 0.0) + float(n)
    per_token = {e: 1.0 / (len(counts) * n) for e, n in counts.items()}
    lookup = np.zeros(max(counts, default=-1) + 1, dtype=np.float32)
    for e, w in per_token.items():
        lookup[e] = w
    return [np.where(m > 0, lookup[np.clip(e, 0, len(lookup) - 1)] if len(lookup) else 0.0, 0.0).astype(np.float32)
            for m, e in zip(loss_masks, episode_index)]  # fmt: skip
