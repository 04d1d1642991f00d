"""Advantages and the decoupled PPO loss, with values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.advantages import dr_grpo, grpo, parallelization_bonus, rloo
from learner.ppo_loss import decoupled_ppo_loss


def test_grpo_by_hand():
    # mean 0.5, population std 0.5 -> (r - 0.5) / 0.5 = +-1 (up to eps)
    np.testing.assert_allclose(grpo([1, 0, 0, 1]), [1, -1, -1, 1], atol=1e-5)


def test_dr_grpo_by_hand():
    # mean 0.25 -> r - 0.25
    np.testing.assert_allclose(dr_grpo([1, 0, 0, 0]), [0.75, -0.25, -0.25, -0.25])


def test_rloo_by_hand():
    # the baseline of each is the mean of the other three: [0, 1/3, 1/3, 1/3]
    np.testing.assert_allclose(rloo([1, 0, 0, 0]), [1, -1 / 3, -1 / 3, -1 / 3])


@pytest.mark.parametrize("estimator", [grpo, dr_grpo, rloo])
def test_degenerate_groups_give_zero(estimator):
    assert estimator([1.0]).tolist() == [0.0]  # a group of one has no baseline
    assert estimator([1.0, 1.0, 1.0]).tolist() == [0.0, 0.0, 0.0]  # all equal: no signal
    assert estimator([0.0, 0.0]).tolist() == [0.0, 0.0]


def test_parallelization_bonus_only_for_correct_episodes():
    # correct, 40 of 100 tokens on the critical path: 0.5 * (1 - 0.4) = 0.3; incorrect: 0
    np.testing.assert_allclose(parallelization_bonus([1, 0], [100, 100], [40, 40], 0.5), [0.3, 0.0])
    assert parallelization_bonus([1], [50], [50], 1.0).tolist() == [0.0]  # sequential: no bonus
    # 1 - 30/100 = 0.7, capped at 0.5: weight 0.4 pays 0.2 (ThreadWeaver's clipped acceleration term).
    np.testing.assert_allclose(parallelization_bonus([1, 1], [100, 100], [30, 80], 0.4, cap=0.5), [0.2, 0.08])


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def loss(logp, prox, behav, adv, mask=None, **kw):
    mask = mask if mask is not None else torch.ones_like(adv)
    return decoupled_ppo_loss(logp, prox, behav, adv, mask, **kw)


def test_on_policy_is_minus_mean_advantage():
    zeros = t(0.0, 0.0)
    assert loss(zeros, zeros, zeros, t(2.0, 1.0)).loss.item() == pytest.approx(-1.5)  # -(2 + 1) / 2


def test_positive_advantage_is_clipped_above_and_has_no_gradient():
    logp = t(math.log(1.5)).requires_grad_()
    terms = loss(logp, t(0.0), t(0.0), t(1.0))
    assert terms.loss.item() == pytest.approx(-1.2)  # min(1.5 * 1, 1.2 * 1)
    assert terms.clip_fraction == 1.0
    terms.loss.backward()
    assert logp.grad.item() == 0.0


def test_negative_advantage_keeps_the_unclipped_term():
    logp = t(math.log(1.5)).requires_grad_()
    terms = loss(logp, t(0.0), t(0.0), t(-1.0))
    assert terms.loss.item() == pytest.approx(1.5)  # -min(-1.5, -1.2)
    terms.loss.backward()
    assert logp.grad.item() == pytest.approx(1.5)  # d/dlogp of exp(logp) at ratio 1.5


def test_importance_weight_of_a_stale_token_and_its_cap():
    # pi_prox / pi_behav = 2: the token counts twice; capped at 1.5 it counts 1.5 times.
    prox, behav = t(math.log(0.5)), t(math.log(0.25))
    assert loss(prox, prox, behav, t(1.0)).loss.item() == pytest.approx(-2.0)
    capped = loss(prox, prox, behav, t(1.0), weight_cap=1.5)
    assert capped.loss.item() == pytest.approx(-1.5) and capped.truncated_fraction == 1.0


def test_k3_kl_by_hand():
    # ref - logp = ln 2: k3 = 2 - ln 2 - 1 = 0.30685; zero advantage leaves only 0.1 * KL.
    logp = t(-1.0)
    terms = loss(logp, logp, logp, t(0.0), reference_logprobs=logp + math.log(2), kl_coef=0.1)
    assert terms.kl.item() == pytest.approx(1 - math.log(2))
    assert terms.loss.item() == pytest.approx(0.1 * (1 - math.log(2)))


def test_masked_tokens_do_not_count():
    zeros = t(0.0, 0.0)
    assert loss(zeros, zeros, zeros, t(1.0, 100.0), mask=t(1.0, 0.0)).loss.item() == pytest.approx(-1.0)


def test_episode_mean_normalisation_by_hand():
    zeros = torch.zeros(4, dtype=torch.float64)
    adv = t(1.0, 1.0, 1.0, -3.0)
    # token mean: -(1 + 1 + 1 - 3) / 4 = 0; episode mean: episode 0 gives -1, episode 1 gives 3 -> 1
    assert loss(zeros, zeros, zeros, adv).loss.item() == pytest.approx(0.0)
    episodes = torch.tensor([0, 0, 0, 1])
    assert loss(zeros, zeros, zeros, adv, episode_ids=episodes).loss.item() == pytest.approx(1.0)
