"""The decoupled PPO objective (AReaL) with truncated importance weights, k3 KL, and
the per-token loss weights that normalize a step's loss.

For each trained token with advantage A, current logprob log pi_theta, proximal logprob
log pi_prox (the learner's weights before this update) and behaviour logprob log pi_behav
(the possibly older weights that sampled it):

    ratio  = pi_theta / pi_prox
    weight = min(pi_prox / pi_behav, cap)            (no gradient; cap = truncation)
    loss   = -weight * min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)

With pi_prox = pi_behav (fresh data, staleness 0) the weight is 1 and this is plain PPO.
The weight is one of the corrections of learner/off_policy.py (truncation above is the
default; AReaL's capped mask, IcePop and sequence masking are the others).

Dual clip (verl's `clip_ratio_c`, Ye et al. 2020), off with `dual_clip` 0: for a negative
advantage the clipped loss is bounded by c * |A|, so a token whose ratio ran far above
1 + eps cannot take an unbounded step down: loss = min(max(-ratio A, -clip(ratio) A), -c A)
where A < 0 (verl requires c > 1; its default is 3).

DAPO is this loss with clip-higher (eps_high > eps_low), token-mean normalization, plus
overlong reward shaping (learner/advantages.py) and dynamic sampling (the stream buffer).
The optional KL to a reference policy uses the k3 estimator
exp(ref - logp) - (ref - logp) - 1, always >= 0. Token losses are averaged over all
trained tokens of the batch ("token_mean"), within each episode first and then over
episodes ("episode_mean"), or summed within each episode and averaged over episodes
("seq_mean_token_sum", verl's mode of that name, where a sequence is an episode).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from learner.loss_terms import PolicyTerms, Surrogate, combine, episode_mean, masked_mean  # noqa: F401
from learner.off_policy import off_policy_weights

PPOTerms = PolicyTerms
NORMALIZATIONS = ("token_mean", "episode_mean", "seq_mean_token_sum")


def ppo_surrogate(
    logprobs: torch.Tensor,
    proximal_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float = 0.0,
) -> Surrogate:
    """The clipped PPO token loss (and the dual clip for A < 0 when `dual_clip` > 0)."""
    ratio = torch.exp(logprobs - proximal_logprobs.detach())
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    unclipped_loss, clipped_loss = -ratio * advantages, -clipped * advantages
    token_loss = torch.maximum(unclipped_loss, clipped_loss)
    was_clipped = (clipped_loss > unclipped_loss).detach().to(logprobs.dtype)
    if dual_clip <= 0:
        return Surrogate(token_loss, was_clipped)
    bound = -dual_clip * advantages
    negative = advantages < 0
    dual = (negative & (token_loss > bound)).detach().to(logprobs.dtype)
    return Surrogate(torch.where(negative, torch.minimum(token_loss, bound), token_loss), was_clipped, dual)


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
    weight_cap_mode: str = "truncate",
    dual_clip: float = 0.0,
    reference_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    episode_ids: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
) -> PolicyTerms:
    """All tensors are flat per-token [N]; `mask` is 1.0 for trained tokens.

    `episode_ids` (int64 [N]) selects episode-mean normalisation; None is token-mean.
    `token_weights` (from `normalization_weights`, 0 off the mask) replaces both: every
    term is then the weighted sum, which is the normalized mean when the weights cover the
    whole batch and one rank's share of it when they cover its shard (data parallelism).
    The behaviour weight is TIS with `weight_cap` (learner/off_policy.py for the others).
    """
    surrogate = ppo_surrogate(
        logprobs, proximal_logprobs, advantages, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip
    )
    weights = off_policy_weights(proximal_logprobs, behaviour_logprobs, cap=weight_cap, cap_mode=weight_cap_mode)
    return combine(
        surrogate, weights, logprobs, mask, reference_logprobs=reference_logprobs, kl_coef=kl_coef,
        episode_ids=episode_ids, token_weights=token_weights,
    )  # fmt: skip


def normalization_weights(
    loss_masks: Sequence[np.ndarray], episode_index: Sequence[np.ndarray], normalization: str
) -> list[np.ndarray]:
    """Per-token loss weights over several micro-batches (aligned arrays, any shape):
    token_mean gives every trained token 1 / T; episode_mean gives a token of episode e
    1 / (E * T_e), with E episodes present and T_e trained tokens of e (both sum to 1);
    seq_mean_token_sum gives every trained token 1 / E (they sum to the mean number of
    trained tokens per episode). The counts are over all the micro-batches given, so
    summing weighted token losses over any split of them (micro-batches, ranks) and adding
    the parts gives the normalized loss of the whole: the update one learner would make."""
    if normalization == "token_mean":
        total = max(sum(float(m.sum()) for m in loss_masks), 1.0)
        return [m.astype(np.float32) / np.float32(total) for m in loss_masks]
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")
    counts: dict[int, float] = {}
    for m, e in zip(loss_masks, episode_index):
        for episode, n in zip(*np.unique(e[m > 0], return_counts=True)):
            counts[int(episode)] = counts.get(int(episode), 0.0) + float(n)
    if normalization == "seq_mean_token_sum":
        per_token = {e: 1.0 / len(counts) for e in counts}
    else:
        per_token = {e: 1.0 / (len(counts) * n) for e, n in counts.items()}
    lookup = np.zeros(max(counts, default=-1) + 1, dtype=np.float32)
    for e, w in per_token.items():
        lookup[e] = w
    return [np.where(m > 0, lookup[np.clip(e, 0, len(lookup) - 1)] if len(lookup) else 0.0, 0.0).astype(np.float32)
            for m, e in zip(loss_masks, episode_index)]  # fmt: skip
