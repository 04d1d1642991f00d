"""The policy loss a config selects: `rl.loss` (ppo | gspo | cispo) and `rl.off_policy`.

`policy_terms` is the one call the learner step makes per micro-batch: the selected
loss's per-token surrogate (learner/ppo_loss.py, gspo_loss.py, cispo_loss.py), times the
selected off-policy weight (learner/off_policy.py), with the KL and the reduction of
learner/loss_terms.py. Sequence-level figures (GSPO's ratio, seq_mask's geometric mean)
arrive per token from the caller when an episode spans micro-batches
(learner/episode_stats.py); otherwise they are computed from this micro-batch.
"""
from __future__ import annotations

import torch

from learner.cispo_loss import cispo_surrogate
from learner.gspo_loss import gspo_surrogate
from learner.loss_terms import PolicyTerms, Surrogate, combine
from learner.off_policy import off_policy_weights
from learner.ppo_loss import ppo_surrogate
from learner.rl_config import RLConfig

LOSSES = ("ppo", "gspo", "cispo")


def surrogate(
    config: RLConfig,
    logprobs: torch.Tensor,
    proximal_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    episode_ids: torch.Tensor,
    sequence_log_ratio: torch.Tensor | None = None,
) -> Surrogate:
    c = config
    if c.loss == "ppo":
        return ppo_surrogate(
            logprobs, proximal_logprobs, advantages, clip_low=c.clip_low, clip_high=c.clip_high, dual_clip=c.dual_clip
        )
    if c.loss == "gspo":
        return gspo_surrogate(
            logprobs, proximal_logprobs, advantages, clip_low=c.gspo_clip_low, clip_high=c.gspo_clip_high,
            mask=mask, episode_ids=episode_ids, sequence_log_ratio=sequence_log_ratio,
        )  # fmt: skip
    if c.loss == "cispo":
        return cispo_surrogate(
            logprobs, proximal_logprobs, advantages, clip_low=c.cispo_clip_low, clip_high=c.cispo_clip_high
        )
    raise ValueError(f"loss {c.loss!r}: choose one of {', '.join(LOSSES)}")


def policy_terms(
    config: RLConfig,
    logprobs: torch.Tensor,
    proximal_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    episode_ids: torch.Tensor,
    *,
    token_weights: torch.Tensor | None = None,
    metric_weights: torch.Tensor | None = None,
    reference_logprobs: torch.Tensor | None = None,
    sequence_log_ratio: torch.Tensor | None = None,
    behaviour_log_ratio: torch.Tensor | None = None,
) -> PolicyTerms:
    """All tensors flat per token [N]. `sequence_log_ratio` / `behaviour_log_ratio`: each
    token's episode's mean log(pi_theta / pi_prox) (gspo) / log(pi_prox / pi_behav)
    (seq_mask) over the whole episode, or None to compute them from these tensors."""
    c = config
    low, high = (c.seq_mask_low, c.seq_mask_high) if c.off_policy == "seq_mask" else (c.icepop_low, c.icepop_high)
    weights = off_policy_weights(
        proximal_logprobs, behaviour_logprobs, mode=c.off_policy, cap=c.weight_cap, cap_mode=c.weight_cap_mode,
        low=low, high=high, mask=mask, episode_ids=episode_ids, episode_log_ratio=behaviour_log_ratio,
    )  # fmt: skip
    loss = surrogate(c, logprobs, proximal_logprobs, advantages, mask, episode_ids, sequence_log_ratio)
    return combine(
        loss, weights, logprobs, mask, reference_logprobs=reference_logprobs,
        kl_coef=c.kl_coef, token_weights=token_weights, metric_weights=metric_weights,
    )  # fmt: skip
