"""GSPO, CISPO, PPO's dual clip and seq_mean_token_sum, with values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.cispo_loss import cispo_surrogate
from learner.gspo_loss import gspo_surrogate
from learner.loss_terms import combine
from learner.off_policy import off_policy_weights
from learner.ppo_loss import decoupled_ppo_loss, normalization_weights, ppo_surrogate


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def on_policy_terms(surrogate, logp, mask=None, **kw):
    """The surrogate's loss with behaviour weight 1 (pi_prox = pi_behav)."""
    mask = torch.ones_like(logp) if mask is None else mask
    return combine(surrogate, off_policy_weights(logp.detach(), logp.detach()), logp, mask, **kw)


# ---- GSPO --------------------------------------------------------------------------------
def test_gspo_ratio_is_the_geometric_mean_over_the_sequence():
    # log(pi_theta / pi_prox) per token = [0.3, -0.1, 0.1] -> mean 0.1 -> s = e^0.1 = 1.10517 at every token.
    prox = t(-1.0, -2.0, -0.5)
    logp = (prox + t(0.3, -0.1, 0.1)).requires_grad_()
    one = torch.zeros(3, dtype=torch.long)
    # A = -1 with a wide band (no clip): token loss = -(s * -1) = s; its gradient is s per token.
    s = gspo_surrogate(logp, prox, t(-1.0, -1.0, -1.0), clip_low=0.5, clip_high=0.5, mask=torch.ones(3), episode_ids=one)
    torch.testing.assert_close(s.token_loss.detach(), t(*[math.exp(0.1)] * 3))
    s.token_loss.sum().backward()
    torch.testing.assert_close(logp.grad, t(*[math.exp(0.1)] * 3))


def test_gspo_clips_a_whole_sequence_at_its_tiny_range():
    # Episode 0 has s = e^0.1 > 1 + 4e-4: with A = +1 every token takes the clipped 1.0004 and
    # no gradient. Episode 1 is on-policy (s = 1): unclipped, loss -1 and gradient 1 per token.
    prox = t(-1.0, -2.0, -0.5, -1.0)
    logp = (prox + t(0.3, -0.1, 0.1, 0.0)).requires_grad_()
    episodes = torch.tensor([0, 0, 0, 1])
    s = gspo_surrogate(logp, prox, t(1.0, 1.0, 1.0, 1.0), mask=torch.ones(4), episode_ids=episodes)
    torch.testing.assert_close(s.token_loss.detach(), t(-1.0004, -1.0004, -1.0004, -1.0))
    assert s.clipped.tolist() == [1.0, 1.0, 1.0, 0.0]
    terms = on_policy_terms(s, logp, episode_ids=episodes)  # episode mean: (-1.0004 + -1) / 2
    assert terms.loss.item() == pytest.approx(-1.0002) and terms.clip_fraction == pytest.approx(0.75)
    terms.loss.backward()
    torch.testing.assert_close(logp.grad, t(0.0, 0.0, 0.0, -0.5))  # d(-s * A)/dlogp = -1, over 2 episodes


def test_gspo_ratio_runs_over_the_whole_thread_tree_of_an_episode():
    # One episode of two threads: the root's tokens have log-ratio 0.2, 0.2, the child's -0.1.
    # Per episode: mean (0.2 + 0.2 - 0.1) / 3 = 0.1 -> s = e^0.1 on all three tokens (per thread it
    # would be e^0.2, e^0.2 and e^-0.1). A masked position (a runtime-inserted join token, log-ratio
    # 5) does not count. Episode 1 (one thread, log-ratio 0) keeps s = 1.
    prox = torch.zeros(5, dtype=torch.float64)
    logp = t(0.2, 0.2, 5.0, -0.1, 0.0)
    mask = t(1.0, 1.0, 0.0, 1.0, 1.0)
    episodes = torch.tensor([0, 0, 0, 0, 1])
    s = gspo_surrogate(logp, prox, -torch.ones(5, dtype=torch.float64), clip_low=1.0, clip_high=10.0,
                       mask=mask, episode_ids=episodes)  # fmt: skip
    e = math.exp(0.1)
    torch.testing.assert_close(s.token_loss[mask > 0], t(e, e, e, 1.0))


def test_gspo_takes_the_episode_ratio_from_the_caller_when_given():
    # A token whose episode's other tokens are elsewhere: the caller's per-episode mean (0.1) wins.
    logp = t(0.5).requires_grad_()
    s = gspo_surrogate(logp, t(0.0), t(-1.0), clip_low=1.0, clip_high=10.0, sequence_log_ratio=t(0.1))
    assert s.token_loss.item() == pytest.approx(math.exp(0.1))


# ---- CISPO -------------------------------------------------------------------------------
def test_cispo_clips_the_weight_but_keeps_the_gradient():
    # ratio e^0.5 = 1.6487 -> coefficient min(1.6487, 1 + 0.28) = 1.28 (no gradient through it).
    # loss = -1.28 * A * logp = -1.28 * 2 * -1 = 2.56; d/dlogp = -1.28 * 2 = -2.56, where PPO's
    # clipped positive-advantage token would get 0.
    logp = t(-1.0).requires_grad_()
    s = cispo_surrogate(logp, t(-1.5), t(2.0))
    assert s.token_loss.item() == pytest.approx(2.56) and s.clipped.item() == 1.0
    s.token_loss.sum().backward()
    assert logp.grad.item() == pytest.approx(-2.56)
    ppo_logp = t(-1.0).requires_grad_()
    ppo_surrogate(ppo_logp, t(-1.5), t(2.0), clip_low=0.2, clip_high=0.28).token_loss.sum().backward()
    assert ppo_logp.grad.item() == 0.0


def test_cispo_has_no_lower_bound_by_default():
    # ratio e^-1 = 0.3679: with clip_low 1.0 the band starts at 0, so it is kept as is;
    # with clip_low 0.2 it is raised to 0.8. loss = -c * A * logp with A = 1, logp = -2.
    logp = t(-2.0)
    free = cispo_surrogate(logp, t(-1.0), t(1.0))
    assert free.token_loss.item() == pytest.approx(2 * math.exp(-1)) and free.clipped.item() == 0.0
    floored = cispo_surrogate(logp, t(-1.0), t(1.0), clip_low=0.2)
    assert floored.token_loss.item() == pytest.approx(1.6) and floored.clipped.item() == 1.0


def test_cispo_on_policy_is_reinforce():
    # ratio 1: loss = -A * logp, token mean over two tokens: -(1 * -0.5 + -2 * -1.0) / 2 = -0.75.
    logp = t(-0.5, -1.0).requires_grad_()
    terms = on_policy_terms(cispo_surrogate(logp, logp.detach(), t(1.0, -2.0)), logp)
    assert terms.loss.item() == pytest.approx(-0.75)
    terms.loss.backward()
    torch.testing.assert_close(logp.grad, t(-0.5, 1.0))  # -A / 2


# ---- PPO dual clip -----------------------------------------------------------------------
def test_dual_clip_bounds_a_negative_advantage_at_c_times_abs_a():
    # A = -1, ratio 5: PPO's loss is max(5, 1.2) = 5; with c = 3 it is min(5, 3) = 3, constant (no gradient).
    logp = t(math.log(5.0)).requires_grad_()
    terms = decoupled_ppo_loss(logp, t(0.0), t(0.0), t(-1.0), t(1.0), dual_clip=3.0)
    assert terms.loss.item() == pytest.approx(3.0) and terms.dual_clip_fraction == 1.0
    terms.loss.backward()
    assert logp.grad.item() == 0.0
    plain = decoupled_ppo_loss(t(math.log(5.0)), t(0.0), t(0.0), t(-1.0), t(1.0))
    assert plain.loss.item() == pytest.approx(5.0) and plain.dual_clip_fraction == 0.0


def test_dual_clip_leaves_small_ratios_and_positive_advantages_alone():
    # A = -1, ratio 2: loss 2 < 3, unchanged (gradient 2); A = +1, ratio 5: -min(5, 1.2) = -1.2.
    logp = t(math.log(2.0), math.log(5.0)).requires_grad_()
    terms = decoupled_ppo_loss(logp, t(0.0, 0.0), t(0.0, 0.0), t(-1.0, 1.0), t(1.0, 1.0), dual_clip=3.0)
    assert terms.loss.item() == pytest.approx((2.0 - 1.2) / 2) and terms.dual_clip_fraction == 0.0
    terms.loss.backward()
    torch.testing.assert_close(logp.grad, t(1.0, 0.0))  # d(ratio)/dlogp = 2, over 2 tokens


# ---- seq_mean_token_sum ------------------------------------------------------------------
def test_seq_mean_token_sum_weights_every_token_one_over_the_number_of_episodes():
    # Episode 0 has 3 trained tokens over both micro-batches, episode 1 has 1: E = 2, so every
    # trained token weighs 1/2 (token sums per episode, mean over episodes). They add to
    # (3 + 1) / 2 = 2, the mean trained tokens per episode.
    masks = [np.array([1, 1, 0], np.float32), np.array([1, 1, 0], np.float32)]
    episodes = [np.array([0, 0, 0]), np.array([0, 1, 1])]
    w = np.concatenate(normalization_weights(masks, episodes, "seq_mean_token_sum"))
    np.testing.assert_allclose(w, [0.5, 0.5, 0, 0.5, 0.5, 0])
    # Token losses [1, 2, -, 3, 4, -]: episode sums 6 and 4 -> mean 5, whichever way the two
    # micro-batches are split over ranks (each rank sums its weighted share).
    losses = [np.array([1.0, 2.0, 9.0]), np.array([3.0, 4.0, 9.0])]
    weights = normalization_weights(masks, episodes, "seq_mean_token_sum")
    parts = [float((loss * weight).sum()) for loss, weight in zip(losses, weights)]
    assert sum(parts) == pytest.approx(5.0)
