"""Off-policy corrections (learner/off_policy.py) with any loss, with values worked out by hand.

rho = pi_prox / pi_behav per token. Every test runs on-policy for pi_theta (logp = prox,
ratio 1), so the loss is -mean(weight * A) for PPO and only the weight varies.
"""
from __future__ import annotations

import math

import pytest
import torch

from learner.loss_terms import combine
from learner.off_policy import off_policy_weights
from learner.ppo_loss import decoupled_ppo_loss, ppo_surrogate

LN = math.log


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def ppo_with(weights, prox, adv, mask=None, **kw):
    mask = torch.ones_like(prox) if mask is None else mask
    return combine(ppo_surrogate(prox, prox, adv), weights, prox, mask, **kw)


# ---- tis: truncate (today) or mask (AReaL) -----------------------------------------------
def test_weight_cap_truncates_or_masks():
    # rho = [2, 1.25], cap 1.5: truncate -> [1.5, 1.25]; mask -> [0, 1.25] (AReaL: above the cap, 0).
    prox, behav = t(LN(0.5), LN(0.5)), t(LN(0.25), LN(0.4))
    truncated = off_policy_weights(prox, behav, cap=1.5)
    torch.testing.assert_close(truncated.weight, t(1.5, 1.25))
    assert truncated.truncated.tolist() == [1.0, 0.0] and truncated.masked.tolist() == [0.0, 0.0]
    masked = off_policy_weights(prox, behav, cap=1.5, cap_mode="mask")
    torch.testing.assert_close(masked.weight, t(0.0, 1.25))
    assert masked.masked.tolist() == [1.0, 0.0] and masked.truncated.tolist() == [0.0, 0.0]


def test_a_masked_token_keeps_its_place_in_the_token_mean():
    # A = 1 on both: truncate -> -(1.5 + 1.25) / 2 = -1.375; mask -> -(0 + 1.25) / 2 = -0.625
    # (the masked token still counts in the denominator, as in AReaL).
    prox, behav, adv = t(LN(0.5), LN(0.5)), t(LN(0.25), LN(0.4)), t(1.0, 1.0)
    kept = decoupled_ppo_loss(prox, prox, behav, adv, t(1.0, 1.0), weight_cap=1.5)
    dropped = decoupled_ppo_loss(prox, prox, behav, adv, t(1.0, 1.0), weight_cap=1.5, weight_cap_mode="mask")
    assert kept.loss.item() == pytest.approx(-1.375) and kept.truncated_fraction == 0.5
    assert dropped.loss.item() == pytest.approx(-0.625) and dropped.masked_fraction == 0.5


# ---- icepop ------------------------------------------------------------------------------
def test_icepop_masks_tokens_outside_the_band_and_does_not_reweight_the_rest():
    # rho = [0.25, 1, 2, 8] in [0.5, 5]: weights [0, 1, 1, 0] (2 stays 1, not 2).
    prox = torch.zeros(4, dtype=torch.float64)
    behav = -t(LN(0.25), 0.0, LN(2.0), LN(8.0))
    w = off_policy_weights(prox, behav, mode="icepop", low=0.5, high=5.0)
    assert w.weight.tolist() == [0.0, 1.0, 1.0, 0.0] and w.masked.tolist() == [1.0, 0.0, 0.0, 1.0]
    # A = 1: loss -(0 + 1 + 1 + 0) / 4 = -0.5; half the tokens masked.
    terms = ppo_with(w, prox, torch.ones(4, dtype=torch.float64))
    assert terms.loss.item() == pytest.approx(-0.5) and terms.masked_fraction == 0.5
    assert terms.mean_importance_weight == pytest.approx(0.5)


def test_icepop_band_edges_are_kept():
    w = off_policy_weights(t(0.0, 0.0), -t(LN(0.5), LN(5.0)), mode="icepop", low=0.5, high=5.0)
    assert w.weight.tolist() == [1.0, 1.0]


# ---- seq_mask ----------------------------------------------------------------------------
def test_seq_mask_masks_whole_episodes_by_their_geometric_mean_ratio():
    # Episode 0: log rho [ln 2, 0] -> g = exp(ln 2 / 2) = sqrt 2 = 1.414 > 1.25: both tokens 0.
    # Episode 1: log rho [0.1, -0.1, 0.09] -> mean 0.03 -> g = e^0.03 = 1.03045: weight g on each.
    # A = 1, token mean over 5: -(3 * 1.03045) / 5 = -0.61827; masked 2 / 5.
    prox = torch.zeros(5, dtype=torch.float64)
    behav = -t(LN(2.0), 0.0, 0.1, -0.1, 0.09)
    episodes = torch.tensor([0, 0, 1, 1, 1])
    mask = torch.ones(5, dtype=torch.float64)
    w = off_policy_weights(prox, behav, mode="seq_mask", low=0.8, high=1.25, mask=mask, episode_ids=episodes)
    g = math.exp(0.03)
    torch.testing.assert_close(w.weight, t(0.0, 0.0, g, g, g))
    terms = ppo_with(w, prox, torch.ones(5, dtype=torch.float64))
    assert terms.loss.item() == pytest.approx(-3 * g / 5) and terms.masked_fraction == pytest.approx(0.4)


def test_seq_mask_geometric_mean_runs_over_the_whole_thread_tree():
    # One episode: the root thread's token has log rho 0.6 (alone, g = 1.82: masked), the child's
    # two tokens -0.6 and 0.0, and a runtime-inserted join token (masked position) log rho 3.
    # Over the tree's trained tokens: (0.6 - 0.6 + 0) / 3 = 0 -> g = 1, the whole tree kept at 1.
    prox = torch.zeros(4, dtype=torch.float64)
    behav = -t(0.6, 3.0, -0.6, 0.0)
    mask = t(1.0, 0.0, 1.0, 1.0)
    one_episode = torch.zeros(4, dtype=torch.long)
    w = off_policy_weights(prox, behav, mode="seq_mask", low=0.8, high=1.25, mask=mask, episode_ids=one_episode)
    torch.testing.assert_close(w.weight[mask > 0], t(1.0, 1.0, 1.0))


def test_seq_mask_takes_the_episode_ratio_from_the_caller():
    # This tensor holds one token of an episode whose mean log rho over all its micro-batches is ln 2.
    w = off_policy_weights(t(0.0), t(0.0), mode="seq_mask", low=0.8, high=1.25, episode_log_ratio=t(LN(2.0)))
    assert w.weight.tolist() == [0.0] and w.masked.tolist() == [1.0]


@pytest.mark.parametrize("mode", ["tis", "icepop", "seq_mask"])
def test_fresh_data_gets_weight_one_under_every_correction(mode):
    prox = t(-0.5, -1.0, -2.0)
    w = off_policy_weights(prox, prox.clone(), mode=mode, mask=torch.ones(3), episode_ids=torch.tensor([0, 0, 1]))
    assert w.weight.tolist() == [1.0, 1.0, 1.0] and w.masked.sum() == 0 and w.truncated.sum() == 0


def test_unknown_modes_are_named():
    with pytest.raises(ValueError, match="off_policy 'x'"):
        off_policy_weights(t(0.0), t(0.0), mode="x")
    with pytest.raises(ValueError, match="weight_cap_mode 'clip'"):
        off_policy_weights(t(0.0), t(0.0), cap_mode="clip")
