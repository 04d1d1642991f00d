"""Off-policy corrections: the weight of each trained token for the policy that sampled it.

Every loss (learner/ppo_loss.py, gspo_loss.py, cispo_loss.py) multiplies its per-token
loss by a weight computed here from the behaviour ratio rho = pi_prox / pi_behav of each
token (pi_prox: the learner's weights before this step's first update; pi_behav: the
engine's logprob when it sampled the token, possibly several versions older). No
gradient flows through any weight. `mode` (RLConfig.off_policy):

- "tis" (default): truncated importance sampling, AReaL's decoupled PPO weight.
  cap_mode "truncate": w = min(rho, cap); cap_mode "mask" (AReaL's default): w = rho, but
  0 where rho > cap.
- "icepop": IcePop's token masking: w = 1 where low <= rho <= high, else 0 (a token the
  two policies disagree on too much stops pushing; the rest are not reweighted).
- "seq_mask": sequence-level masked importance sampling. g_e = exp(mean over every
  trained token of episode e of log rho), the geometric mean of rho over the episode's
  whole thread tree (the reward, and so the advantage, belongs to the episode; the
  geometric mean keeps the figure comparable across lengths, where the product would
  vanish or explode). Every token of e gets w = g_e where low <= g_e <= high, else 0:
  the episode is masked entirely.

Metrics: `truncated` marks tokens whose weight was cut to the cap, `masked` tokens whose
weight was set to 0 by the correction. Masked tokens stay in the loss's normalization
(learner/loss_terms.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.episode_stats import episode_token_mean

MODES = ("tis", "icepop", "seq_mask")


@dataclass
class OffPolicyWeights:
    weight: torch.Tensor
    """[N] the weight of each token's loss (no gradient)."""
    truncated: torch.Tensor
    """[N] 1.0 where the weight was cut to the cap."""
    masked: torch.Tensor
    """[N] 1.0 where the correction set the weight to 0."""


def off_policy_weights(
    proximal_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    *,
    mode: str = "tis",
    cap: float = 5.0,
    cap_mode: str = "truncate",
    low: float = 0.5,
    high: float = 5.0,
    mask: torch.Tensor | None = None,
    episode_ids: torch.Tensor | None = None,
    episode_log_ratio: torch.Tensor | None = None,
) -> OffPolicyWeights:
    """Per-token weights [N] (see the module doc). `low` / `high` bound icepop's token ratio
    or seq_mask's geometric mean. seq_mask reads `episode_log_ratio`, each token's episode's
    mean log rho ([N], computed across micro-batches by the caller), or computes it here
    from `mask` and `episode_ids` when this tensor holds all of each episode's tokens."""
    log_rho = (proximal_logprobs - behaviour_logprobs).detach()
    rho = torch.exp(log_rho)
    zeros = torch.zeros_like(rho)
    if mode == "tis":
        over = rho > cap
        if cap_mode == "truncate":
            return OffPolicyWeights(rho.clamp(max=cap), over.to(rho.dtype), zeros)
        if cap_mode == "mask":
            return OffPolicyWeights(torch.where(over, zeros, rho), zeros, over.to(rho.dtype))
        raise ValueError(f"weight_cap_mode {cap_mode!r}: choose truncate or mask")
    if mode == "icepop":
        inside = (rho >= low) & (rho <= high)
        return OffPolicyWeights(inside.to(rho.dtype), zeros, (~inside).to(rho.dtype))
    if mode == "seq_mask":
        if episode_log_ratio is None:
            if mask is None or episode_ids is None:
                raise ValueError("seq_mask needs episode_log_ratio, or mask and episode_ids")
            episode_log_ratio = episode_token_mean(log_rho, mask, episode_ids)
        geometric = torch.exp(episode_log_ratio.detach().to(rho.dtype))
        inside = (geometric >= low) & (geometric <= high)
        return OffPolicyWeights(torch.where(inside, geometric, zeros), zeros, (~inside).to(rho.dtype))
    raise ValueError(f"off_policy {mode!r}: choose one of {', '.join(MODES)}")
