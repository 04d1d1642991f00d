"""What every policy loss shares: the surrogate's contract, the behaviour weight, k3 KL, reduction.

A loss (learner/ppo_loss.py, gspo_loss.py, cispo_loss.py) turns logprobs and advantages
into a `Surrogate`: a per-token loss with its gradient, before any correction for the
policy that sampled the tokens. `combine` multiplies it by the off-policy weight of each
token (learner/off_policy.py: truncated, masked or sequence-masked pi_prox / pi_behav,
no gradient), adds the k3 KL to a reference policy, and reduces:

- with `token_weights` (from ppo_loss.normalization_weights, 0 off the mask) every term is
  the weighted sum, which is the normalized mean when the weights cover the whole update
  and one rank's share of it when they cover its shard (data parallelism);
- otherwise the mean over trained tokens ("token_mean"), or, given `episode_ids`, the mean
  over episodes of each episode's token mean ("episode_mean").
Tokens a correction masks keep their place in the normalization (weight 0, still counted),
as in IcePop's and masked IS's estimators and AReaL's capped-weight mask: the weights of a
step are then fixed before its forward passes, and a masked token only stops pushing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from learner.off_policy import OffPolicyWeights


class Surrogate(NamedTuple):
    token_loss: torch.Tensor
    """[N] loss per token (with gradient), before the behaviour weight."""
    clipped: torch.Tensor
    """[N] 1.0 where the loss's clip acted (no gradient)."""
    dual_clipped: torch.Tensor | None = None
    """[N] 1.0 where PPO's dual clip bounded a negative-advantage token."""


@dataclass
class PolicyTerms:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    kl: torch.Tensor
    clip_fraction: float
    mean_importance_weight: float
    truncated_fraction: float
    masked_fraction: float = 0.0
    dual_clip_fraction: float = 0.0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def episode_mean(values: torch.Tensor, mask: torch.Tensor, episode_ids: torch.Tensor) -> torch.Tensor:
    """Mean over episodes of each episode's token mean (tokens of one episode share an id)."""
    num_episodes = int(episode_ids.max().item()) + 1
    sums = values.new_zeros(num_episodes).index_add(0, episode_ids, values * mask)
    counts = values.new_zeros(num_episodes).index_add(0, episode_ids, mask)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def k3_kl(logprobs: torch.Tensor, reference_logprobs: torch.Tensor) -> torch.Tensor:
    """exp(ref - logp) - (ref - logp) - 1 per token: >= 0, unbiased for KL(pi || ref)."""
    delta = reference_logprobs.detach() - logprobs
    return torch.exp(delta) - delta - 1.0


def reducer(
    mask: torch.Tensor,
    episode_ids: torch.Tensor | None,
    token_weights: torch.Tensor | None,
    metric_weights: torch.Tensor | None = None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], float]]:
    """(reduce for the loss terms, share for the metrics: a token mean or its weighted part;
    `metric_weights` when the loss weights do not sum to 1, as seq_mean_token_sum's)."""
    if token_weights is not None:
        shares = token_weights if metric_weights is None else metric_weights
        return (lambda v: (v * token_weights).sum()), (lambda v: (v * shares).sum().item())
    if episode_ids is None:
        reduce = lambda v: masked_mean(v, mask)  # noqa: E731
    else:
        reduce = lambda v: episode_mean(v, mask, episode_ids)  # noqa: E731
    return reduce, lambda v: masked_mean(v, mask).item()


def combine(
    surrogate: Surrogate,
    weights: OffPolicyWeights,
    logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    reference_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    episode_ids: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
    metric_weights: torch.Tensor | None = None,
) -> PolicyTerms:
    """loss = reduce(weight * token_loss) + kl_coef * reduce(k3); see the module doc. The
    fractions and the mean weight are shares under `metric_weights` (default: the loss's)."""
    mask = mask.to(logprobs.dtype)
    reduce, share = reducer(mask, episode_ids, token_weights, metric_weights)
    policy_loss = reduce(weights.weight.detach() * surrogate.token_loss)
    kl = torch.zeros_like(logprobs)
    if reference_logprobs is not None and kl_coef > 0:
        kl = k3_kl(logprobs, reference_logprobs)
    kl_mean = reduce(kl)
    loss = policy_loss + kl_coef * kl_mean
    with torch.no_grad():
        dual = 0.0 if surrogate.dual_clipped is None else share(surrogate.dual_clipped.to(mask.dtype))
        return PolicyTerms(
            loss, policy_loss, kl_mean,
            clip_fraction=share(surrogate.clipped.to(mask.dtype)),
            mean_importance_weight=share(weights.weight.to(mask.dtype)),
            truncated_fraction=share(weights.truncated.to(mask.dtype)),
            masked_fraction=share(weights.masked.to(mask.dtype)),
            dual_clip_fraction=dual,
        )  # fmt: skip
