"""Shards and loss weights of data-parallel learning, by hand."""
from __future__ import annotations

import numpy as np
import pytest

from learner.data_parallel import assign_micro_batches
from learner.ppo_loss import normalization_weights


def test_micro_batches_are_balanced_by_tokens():
    # Largest first to the least-loaded rank: 50 -> r0, 40 -> r1, 30 -> r1 (40 < 50), 20 -> r0 (50 < 70), 10 -> r0 (70 = 70: lowest rank).
    assert assign_micro_batches([10, 50, 20, 40, 30], 2) == [[0, 1, 2], [3, 4]]
    assert assign_micro_batches([10, 20], 3) == [[1], [0], []]  # a rank may get nothing
    assert assign_micro_batches([7, 8, 9], 1) == [[0, 1, 2]]


def test_token_mean_weights_sum_to_one_over_all_micro_batches():
    masks = [np.array([[1, 1, 0]], np.float32), np.array([[1, 0, 0]], np.float32)]
    episodes = [np.zeros((1, 3), np.int64)] * 2
    w = normalization_weights(masks, episodes, "token_mean")
    np.testing.assert_allclose(np.concatenate([x.ravel() for x in w]), [1 / 3, 1 / 3, 0, 1 / 3, 0, 0])


def test_episode_mean_weights_give_each_episode_an_equal_share_across_micro_batches():
    # Episode 0 has 3 trained tokens split over both micro-batches, episode 1 has 1:
    # E = 2 -> tokens of 0 weigh 1 / (2 * 3), the token of 1 weighs 1 / (2 * 1).
    masks = [np.array([1, 1, 0], np.float32), np.array([1, 1, 0], np.float32)]
    episodes = [np.array([0, 0, 0]), np.array([0, 1, 1])]
    w = np.concatenate(normalization_weights(masks, episodes, "episode_mean"))
    np.testing.assert_allclose(w, [1 / 6, 1 / 6, 0, 1 / 6, 1 / 2, 0])
    assert w.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalization 'sum'"):
        normalization_weights(masks, episodes, "sum")
