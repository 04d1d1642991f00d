"""REINFORCE++, GRPO/singleton conventions and DAPO's overlong shaping, worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from configs.typed import ConfigError, build
from learner.advantages import (
    GroupConventions,
    batch_normalize,
    dr_grpo,
    grpo,
    overlong_penalty,
    reinforce_pp,
    reinforce_pp_baseline,
    rloo,
)
from learner.rl_batch import Overlong, RLBatchError, build_batch, episode_advantages
from learner.rl_config import RLConfig
from tests.episode_rows import thread_row

SAMPLE = GroupConventions(std="sample")
RAW = GroupConventions(singleton="reward")


def episode(eid, group, reward, num_trained, **fields):
    """One thread with `num_trained` output tokens after one prompt token."""
    n = num_trained
    return thread_row(eid, group, reward=reward, token_ids=list(range(5, 6 + n)), trainable=[False] + [True] * n,
                      logprobs=[-0.1] * n, versions=[0] * n, **fields)  # fmt: skip


# ---- conventions -------------------------------------------------------------------------
def test_grpo_sample_std_is_bessel_corrected():
    # mean 0.5; sample std sqrt(4 * 0.25 / 3) = 0.57735 -> +-0.5 / 0.57735 = +-0.86603 (population: +-1)
    np.testing.assert_allclose(grpo([1, 0, 0, 1], SAMPLE), [0.86603, -0.86603, -0.86603, 0.86603], atol=1e-5)
    assert grpo([1.0, 1.0], SAMPLE).tolist() == [0.0, 0.0]  # all equal: std 0, no signal either way


def test_a_group_of_one_gets_zero_or_its_raw_reward():
    for estimator in (grpo, dr_grpo, rloo, reinforce_pp_baseline):
        assert estimator([0.7]).tolist() == [0.0]
    # verl: mean 0 and std 1 for a group of one -> 0.7 / (1 + 1e-6) under grpo, 0.7 otherwise.
    assert grpo([0.7], RAW)[0] == pytest.approx(0.7 / (1 + 1e-6), rel=1e-12)
    for estimator in (dr_grpo, rloo, reinforce_pp_baseline):
        assert estimator([0.7], RAW).tolist() == [0.7]
    assert reinforce_pp([0.7]).tolist() == [0.7]  # no baseline: the reward, whatever the convention


def test_conventions_reach_the_batch_from_the_config():
    rows = [episode("a", "p", 1.0, 2), episode("b", "p", 0.0, 2), episode("c", "q", 1.0, 2)]
    _, _, today = episode_advantages(rows, "dr_grpo")
    _, _, verl = episode_advantages(rows, "dr_grpo", conventions=RAW)
    np.testing.assert_allclose(today, [0.5, -0.5, 0.0])
    np.testing.assert_allclose(verl, [0.5, -0.5, 1.0])  # c alone in group q keeps its reward


# ---- REINFORCE++ ---------------------------------------------------------------------------
def test_batch_normalization_is_token_weighted():
    # A = [1, 0, 1] over 2, 1 and 3 trained tokens (6): mean (2 + 0 + 3) / 6 = 5/6;
    # var (2 (1/6)^2 + (5/6)^2 + 3 (1/6)^2) / 6 = 5/36 -> std sqrt5 / 6:
    # (1 - 5/6) * 6 / sqrt5 = 1/sqrt5 = 0.44721, (0 - 5/6) * 6 / sqrt5 = -sqrt5 = -2.23607.
    root5 = math.sqrt(5)
    np.testing.assert_allclose(batch_normalize([1, 0, 1], [2, 1, 3]), [1 / root5, -root5, 1 / root5])
    assert batch_normalize([0.3, 0.3], [4, 1]).tolist() == [0.0, 0.0]  # all equal: the 1e-8 floor, then zeros


def rows_pq():
    # Group p: a (reward 1, 2 tokens), b (0, 1 token); group q: c (1, 3 tokens) alone.
    return [episode("a", "p", 1.0, 2), episode("b", "p", 0.0, 1), episode("c", "q", 1.0, 3)]


def test_reinforce_pp_has_no_baseline_then_normalizes_over_the_batch():
    # A = r = [1, 0, 1], then the token-weighted normalization above.
    _, _, adv = episode_advantages(rows_pq(), "reinforce_pp")
    np.testing.assert_allclose(adv, [1 / math.sqrt(5), -math.sqrt(5), 1 / math.sqrt(5)])


def test_reinforce_pp_baseline_subtracts_the_group_mean_then_normalizes():
    # Group means: p 0.5 -> [0.5, -0.5]; q (one episode) -> 0. A = [0.5, -0.5, 0] over [2, 1, 3] tokens:
    # mean (1 - 0.5 + 0) / 6 = 1/12; var (2 (5/12)^2 + (7/12)^2 + 3 (1/12)^2) / 6 = 17/144, std sqrt17 / 12:
    # [5, -7, -1] / sqrt17 = [1.21268, -1.69775, -0.24254].
    _, _, adv = episode_advantages(rows_pq(), "reinforce_pp_baseline")
    np.testing.assert_allclose(adv, np.array([5, -7, -1]) / math.sqrt(17))


def test_reinforce_pp_counts_a_thread_trees_tokens_and_broadcasts_to_every_thread():
    # Episode a is a tree: root with 2 trained tokens, child with 1 (3 in all); b has 3. Rewards
    # 1 and 0: A = [1, 0] over [3, 3] tokens -> mean 0.5, std 0.5 -> [+1, -1] on every thread.
    rows = [
        episode("a", "p", 1.0, 2),
        episode("a", "p", 1.0, 1, thread_id=1, parent_id=0, spawn_index=0, depth=1, role="child"),
        episode("b", "p", 0.0, 3),
    ]
    batch = build_batch(rows, estimator="reinforce_pp", seq_len=8, rows_per_micro_batch=4)
    np.testing.assert_allclose(batch.advantages, [1.0, -1.0], atol=1e-6)
    (mb,) = batch.micro_batches
    assert sorted(set(np.round(mb.advantages[mb.loss_mask > 0], 6))) == [-1.0, 1.0]


# ---- DAPO's overlong shaping ----------------------------------------------------------------
def test_overlong_penalty_by_hand():
    # max 20, buffer 4 -> expected 16: 10 and 16 free; 18 -> (16 - 18) / 4 = -0.5; 20 and 25 -> -1.
    np.testing.assert_allclose(overlong_penalty([10, 16, 18, 20, 25], 20, 4), [0, 0, -0.5, -1, -1])
    np.testing.assert_allclose(overlong_penalty([18], 20, 4, factor=0.5), [-0.25])
    assert overlong_penalty([1000], 20, 0).tolist() == [0.0]  # buffer 0: off


def test_overlong_shaping_reads_the_critical_path_of_a_thread_episode():
    # Both correct; a's critical path is 18 (penalty -0.5), b's 10 (none); both generated 30 in all,
    # which would penalize them equally (-1). Shaped [0.5, 1.0] -> dr_grpo [-0.25, +0.25].
    # The reported rewards stay the verified ones.
    rows = [
        episode("a", "p", 1.0, 2, episode_total_tokens=30, episode_critical_path_tokens=18),
        episode("b", "p", 1.0, 2, episode_total_tokens=30, episode_critical_path_tokens=10),
    ]
    batch = build_batch(rows, estimator="dr_grpo", seq_len=8, rows_per_micro_batch=2, overlong=Overlong(20, 4))
    np.testing.assert_allclose(batch.advantages, [-0.25, 0.25])
    np.testing.assert_allclose(batch.rewards, [1.0, 1.0])
    np.testing.assert_allclose(batch.overlong_penalty, [-0.5, 0.0])
    assert build_batch(rows, estimator="dr_grpo", seq_len=8, rows_per_micro_batch=2).overlong_penalty is None


def test_overlong_shaping_needs_the_critical_path():
    with pytest.raises(RLBatchError, match="overlong_buffer needs critical-path tokens"):
        episode_advantages([episode("a", "p", 1.0, 2)], "grpo", overlong=Overlong(20, 4))


# ---- config ---------------------------------------------------------------------------------
def test_config_accepts_the_new_settings_and_names_bad_ones():
    config = build(RLConfig, {"estimator": "reinforce_pp_baseline", "loss": "cispo", "off_policy": "icepop",
                              "grpo_std": "sample", "singleton_advantage": "reward", "dual_clip": 3.0,
                              "weight_cap_mode": "mask", "normalization": "seq_mean_token_sum",
                              "overlong_buffer": 16, "overlong_max_tokens": 64, "dynamic_sampling": True})  # fmt: skip
    assert config.loss == "cispo" and config.dynamic_sampling
    for bad, message in [
        ({"loss": "trpo"}, "loss: must be one of ppo, gspo, cispo"),
        ({"dual_clip": 1.0}, "dual_clip: must be 0 \\(off\\) or > 1"),
        ({"overlong_buffer": 16}, "overlong_max_tokens: must be >= overlong_buffer"),
        ({"dynamic_sampling": True, "group_size": 1}, "dynamic_sampling: needs group_size >= 2"),
        ({"icepop_low": 0.9, "icepop_high": 1.0}, None),
        ({"off_policy": "is"}, "off_policy: must be one of tis, icepop, seq_mask"),
    ]:
        if message is None:
            build(RLConfig, bad)  # 0.9 < 1.0: fine
            continue
        with pytest.raises(ConfigError, match=message):
            build(RLConfig, bad)
