"""GSPO (Zheng et al. 2025): a sequence-level importance ratio, clipped per sequence.

For a sequence i with advantage A_i and trained tokens t = 1..|y_i|:

    s_i  = exp( mean_t (log pi_theta(t) - log pi_prox(t)) )      the length-normalized ratio
    loss = -min(s_i * A_i, clip(s_i, 1 - eps_low, 1 + eps_high) * A_i)

GSPO's clip ranges are tiny (the paper: 3e-4 below, 4e-4 above) because s_i averages
the log-ratios of a whole sequence. The gradient flows through s_i in the GSPO-token form
s_i,t = sg(s_i) * pi_theta(t) / sg(pi_theta(t)): its value is s_i at every token and its
gradient s_i * grad log pi_theta(t), so with token losses averaged within each sequence
("episode_mean", the paper's 1/|y_i| sum_t) this equals GSPO's sequence objective, and
with one advantage per sequence the two give the same gradient.

A thread episode is one sequence: s_i runs over every trained token of every thread of
the episode. The episode is the unit that earns the reward (its advantage is broadcast to
all its threads) and its likelihood under a policy is the product over the whole tree's
generated tokens, so the ratio and its clip decision belong to the episode: one clip
keeps or drops a whole tree, never half of it. (Per thread, a short child thread would
get a noisy ratio of its own and could be clipped while its siblings are not.)

As everywhere in treadle, pi_prox is the learner's weights before the step's first update
(decoupled PPO), so on a step's only update s_i = 1 and nothing is clipped; the clip acts
from the second update on (rl.ppo_epochs or rl.mini_batches above 1). Staleness is
corrected by the off-policy weight (learner/off_policy.py), as for every loss.
"""
from __future__ import annotations

import torch

from learner.episode_stats import episode_token_mean
from learner.loss_terms import Surrogate

MAX_LOG_RATIO = 10.0  # s_i is capped at e^10 before the clip, as verl does, so exp never overflows


def gspo_surrogate(
    logprobs: torch.Tensor,
    proximal_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    mask: torch.Tensor | None = None,
    episode_ids: torch.Tensor | None = None,
    sequence_log_ratio: torch.Tensor | None = None,
) -> Surrogate:
    """Per-token [N] GSPO-token loss. `sequence_log_ratio` [N] is each token's episode's mean
    log(pi_theta / pi_prox) (the caller computes it across micro-batches); without it, it is
    computed here from `mask` and `episode_ids`, for a tensor holding whole episodes."""
    if sequence_log_ratio is None:
        if mask is None or episode_ids is None:
            raise ValueError("gspo needs sequence_log_ratio, or mask and episode_ids")
        sequence_log_ratio = episode_token_mean(logprobs - proximal_logprobs, mask, episode_ids)
    log_ratio = logprobs - logprobs.detach() + sequence_log_ratio.detach().to(logprobs.dtype)
    ratio = torch.exp(log_ratio.clamp(max=MAX_LOG_RATIO))
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    unclipped_loss, clipped_loss = -ratio * advantages, -clipped * advantages
    was_clipped = (clipped_loss > unclipped_loss).detach().to(logprobs.dtype)
    return Surrogate(torch.maximum(unclipped_loss, clipped_loss), was_clipped)
