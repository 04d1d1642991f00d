"""RL batches and the learner step: hand-checked alignment, degenerate groups, a real tiny update."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from configs.typed import ConfigError, build
from learner.models import init_model
from learner.packing import IGNORE
from learner.presets import ModelConfig
from learner.rl_batch import RLBatchError, build_batch, episode_advantages
from learner.rl_config import RLConfig
from learner.rl_step import RLLearner
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.episode_table import to_table
from tests.episode_rows import thread_row

I = IGNORE


def thread(episode, group, reward, token_ids, num_prompt, trainable, logprobs, versions, thread_id=0):
    """A version-2 row; `group` is the group_id (the k samples of one problem under one ticket)."""
    return thread_row(
        episode, group, reward=reward, token_ids=token_ids, num_prompt_tokens=num_prompt, trainable=trainable,
        logprobs=logprobs, versions=versions, thread_id=thread_id, parent_id=-1 if thread_id == 0 else 0,
        spawn_index=-1 if thread_id == 0 else 0, depth=int(thread_id > 0), role="root" if thread_id == 0 else "child",
    )


F, T = False, True
# Episodes a and b solve problem p (a group of two, rewards 1 and 0); c alone solves q.
HAND_ROWS = [
    thread("a", "p", 1.0, [10, 11, 12, 13, 14], 2, [F, F, T, T, T], [-0.1, -0.2, -0.3], [3, 3, 4]),
    # A child whose token 22 was inserted by the runtime (a join): observed, not trained.
    thread("a", "p", 1.0, [20, 21, 22, 23], 1, [F, T, F, T], [-0.5, 0.0, -0.7], [4, -1, 4], thread_id=1),
    thread("b", "p", 0.0, [30, 31, 32], 1, [F, T, T], [-1.0, -1.5], [2, 2]),
    thread("c", "q", 1.0, [40, 41, 42], 2, [F, F, T], [-0.9], [5]),
]


def test_hand_built_rows_are_aligned_and_advantages_broadcast():
    # dr_grpo: group p rewards (1, 0), mean 0.5 -> a +0.5, b -0.5; group q has one episode -> 0.
    batch = build_batch(to_table(HAND_ROWS), estimator="dr_grpo", seq_len=8, rows_per_micro_batch=2)
    assert batch.episode_ids == ["a", "b", "c"]
    np.testing.assert_allclose(batch.advantages, [0.5, -0.5, 0.0])
    (mb,) = batch.micro_batches
    # First fit: a0 (5 tokens) row 0; a1 (4) does not fit after it -> row 1; b0 (3) row 0 at 5; c0 (3) row 1 at 4.
    np.testing.assert_array_equal(mb.packed.input_ids, [[10, 11, 12, 13, 14, 30, 31, 32], [20, 21, 22, 23, 40, 41, 42, 0]])
    np.testing.assert_array_equal(mb.packed.position_ids, [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 0]])
    # Position p predicts token p + 1; 11 is prompt, 22 inserted, 41 prompt, and a thread's last position predicts nothing.
    np.testing.assert_array_equal(mb.packed.labels, [[I, 12, 13, 14, I, 31, 32, I], [21, I, 23, I, I, 42, I, I]])
    # Output token j's logprob sits at position num_prompt + j - 1 (it is the label there).
    np.testing.assert_allclose(mb.behaviour_logprobs, [[0, -0.1, -0.2, -0.3, 0, -1.0, -1.5, 0], [-0.5, 0, -0.7, 0, 0, -0.9, 0, 0]])
    np.testing.assert_allclose(mb.advantages, [[0, 0.5, 0.5, 0.5, 0, -0.5, -0.5, 0], [0.5, 0, 0.5, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(mb.loss_mask, mb.packed.labels != I)
    np.testing.assert_array_equal(mb.versions, [[-1, 3, 3, 4, -1, 2, 2, -1], [4, -1, 4, -1, -1, 5, -1, -1]])
    np.testing.assert_array_equal(mb.episode_index, [[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 2, 2, 2, 0]])


def test_micro_batches_keep_every_trained_token():
    whole = build_batch(HAND_ROWS, estimator="dr_grpo", seq_len=8, rows_per_micro_batch=2)
    split = build_batch(HAND_ROWS, estimator="dr_grpo", seq_len=8, rows_per_micro_batch=1)
    # One row each: [a0], [a1 b0], [c0] (packing takes a prefix and stops at the first misfit).
    assert len(split.micro_batches) == 3 and split.num_trained_tokens == whole.num_trained_tokens == 3 + 2 + 2 + 1

    def trained(batch):
        return sorted(
            (int(lab), float(lp), float(adv))
            for mb in batch.micro_batches
            for lab, lp, adv in zip(mb.packed.labels.ravel(), mb.behaviour_logprobs.ravel(), mb.advantages.ravel())
            if lab != I
        )

    assert trained(split) == trained(whole)


def test_parallel_bonus_is_added_to_rewards_before_the_estimator():
    # weight 0.4; a: correct, critical 6 of 8 tokens -> bonus 0.4 * (1 - 6/8) = 0.1; b wrong -> 0.
    # shaped rewards (1.1, 0) -> dr_grpo (+0.55, -0.55). The token counts are the episode's columns.
    counted = [dict(r, episode_total_tokens=t, episode_critical_path_tokens=c)
               for r, (t, c) in zip(HAND_ROWS[:3], [(8, 6), (8, 6), (2, 2)])]  # fmt: skip
    _, rewards, adv = episode_advantages(counted, "dr_grpo", 0.4)
    np.testing.assert_allclose(rewards, [1.0, 0.0])
    np.testing.assert_allclose(adv, [0.55, -0.55])
    with pytest.raises(RLBatchError, match="critical-path"):
        episode_advantages(HAND_ROWS[:3], "dr_grpo", 0.4)  # a version-1 file's episodes have no critical path


def test_groups_are_found_by_group_id_not_problem_id():
    # The same problem sampled under two tickets is two groups: each of one episode -> advantage 0.
    rows = [thread("a", "p#0", 1.0, [1, 2], 1, [F, T], [-0.1], [0]), thread("b", "p#1", 0.0, [1, 2], 1, [F, T], [-0.1], [0])]
    _, _, adv = episode_advantages(rows, "dr_grpo")
    np.testing.assert_allclose(adv, [0.0, 0.0])
    rows[1]["group_id"] = "p#0"  # one group (1, 0) -> (+0.5, -0.5)
    np.testing.assert_allclose(episode_advantages(rows, "dr_grpo")[2], [0.5, -0.5])


def test_a_thread_longer_than_seq_len_widens_the_rows_instead_of_failing():
    long = thread("d", "r", 1.0, list(range(10)), 1, [F] + [T] * 9, [-0.5] * 9, [0] * 9)
    (mb,) = build_batch([long, HAND_ROWS[3]], estimator="grpo", seq_len=8, rows_per_micro_batch=2).micro_batches
    assert mb.packed.input_ids.shape == (2, 10)  # 10 wide for this batch; nothing cut
    assert mb.loss_mask.sum() == 9 + 1


def test_bad_rows_are_named_errors():
    short = thread("e", "r", 1.0, [1, 2, 3], 1, [F, T, T], [-0.1], [0])
    with pytest.raises(RLBatchError, match="episode e thread 0: logprobs"):
        build_batch([short], estimator="grpo", seq_len=8, rows_per_micro_batch=1)


def test_config_names_bad_keys():
    assert build(RLConfig, {"estimator": "rloo", "lr": "1e-4"}).lr == 1e-4
    with pytest.raises(ConfigError, match="normalization: must be one of token_mean, episode_mean"):
        build(RLConfig, {"normalization": "sum"})
    with pytest.raises(ConfigError, match="clip_low: must be < 1"):
        build(RLConfig, {"clip_low": 1.0})


# ---- a real tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def tiny(tokenizer, seed=0):
    torch.set_num_threads(1)
    return init_model(ModelConfig(preset="tiny", init_seed=seed), tokenizer)


@torch.no_grad()
def own_logprobs(model, token_ids, num_prompt):
    """The model's logprob of each output token, run alone (no packing)."""
    logp = torch.log_softmax(model(input_ids=torch.tensor([token_ids])).logits[0].float(), -1)
    return [logp[t - 1, token_ids[t]].item() for t in range(num_prompt, len(token_ids))]


def self_sampled_rows(model, rewards, problem="p", seed=0):
    """One two-thread episode per reward, behaviour logprobs from `model` itself (weight 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for e, reward in enumerate(rewards):
        for t, (num_prompt, num_out) in enumerate([(5, 9), (3, 6)]):
            ids = rng.integers(20, 200, num_prompt + num_out).tolist()
            trainable = [F] * num_prompt + [T] * num_out
            lps = own_logprobs(model, ids, num_prompt)
            rows.append(thread(f"{problem}{e}", problem, reward, ids, num_prompt, trainable, lps, [0] * num_out, t))
    return rows


def mean_trained_logprob(model, rows, episode):
    values = [lp for r in rows if r["episode_id"] == episode for lp in own_logprobs(model, r["token_ids"], r["num_prompt_tokens"])]
    return float(np.mean(values))


def test_step_raises_positive_and_lowers_negative_episodes(tokenizer):
    model = tiny(tokenizer)
    rows = self_sampled_rows(model, [1.0, 0.0])
    learner = RLLearner(model, RLConfig(estimator="dr_grpo", lr=1e-3, seq_len=32, rows=1, grad_clip=0.0))
    before = {e: mean_trained_logprob(model, rows, e) for e in ("p0", "p1")}
    metrics = learner.step(rows)
    after = {e: mean_trained_logprob(model, rows, e) for e in ("p0", "p1")}
    assert learner.version == metrics["version"] == 1
    # Behaviour logprobs are the model's own, computed unpacked: packing and alignment agree.
    assert metrics["importance_weight"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["mismatch_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["trained_tokens"] == 2 * (9 + 6)  # every output token, the first predicted from the last prompt position
    assert after["p0"] > before["p0"] and after["p1"] < before["p1"]
    assert metrics["mean_reward"] == 0.5 and metrics["max_token_staleness"] == 0


@pytest.mark.parametrize("rewards", [[1.0], [1.0, 1.0, 1.0]], ids=["group-of-one", "all-equal"])
def test_degenerate_groups_give_zero_advantage_and_loss(tokenizer, rewards):
    model = tiny(tokenizer)
    rows = self_sampled_rows(model, rewards)
    learner = RLLearner(model, RLConfig(estimator="grpo", seq_len=32, rows=2, normalization="episode_mean"))
    metrics = learner.step(rows)
    assert metrics["mean_advantage"] == 0.0 and metrics["policy_loss"] == 0.0 and metrics["loss"] == 0.0


def test_weights_round_trip_into_a_fresh_model(tokenizer):
    model = tiny(tokenizer)
    learner = RLLearner(model, RLConfig(estimator="rloo", lr=1e-3, seq_len=32, rows=1, kl_coef=0.1))
    learner.step(self_sampled_rows(model, [1.0, 0.0]))
    weights = learner.weights()
    assert all(a.dtype == np.float32 for a in weights.values()) and "model.embed_tokens.weight" in weights
    fresh = tiny(tokenizer, seed=1)
    missing, unexpected = fresh.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected  # the tied head comes with the embedding
    ids = torch.tensor([[1, 30, 31, 32, 33]])
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)

    restored = RLLearner(tiny(tokenizer, seed=2), learner.config)
    restored.load_state_dict(learner.state_dict())
    assert restored.version == 1
    torch.testing.assert_close(restored.model.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_several_updates_per_batch_clip_the_ratio_and_bump_the_version_once(tokenizer):
    model = tiny(tokenizer)
    rows = self_sampled_rows(model, [1.0, 0.0])
    config = RLConfig(estimator="dr_grpo", lr=3e-2, seq_len=32, rows=1, grad_clip=0.0, clip_low=0.05, clip_high=0.05)
    single = RLLearner(tiny(tokenizer), config).step(rows)
    learner = RLLearner(model, replace(config, ppo_epochs=2, mini_batches=2))
    metrics = learner.step(rows)
    # Two episodes of two threads pack into 2 rows of 32 tokens -> 2 micro-batches of one row,
    # so 2 mini-batches x 2 epochs = 4 updates, and one version.
    assert single["micro_batches"] == metrics["micro_batches"] == 2
    assert single["updates"] == 1 and metrics["updates"] == 4 and learner.version == 1
    # One update: pi_theta = pi_prox, the ratio is 1 and never clipped. Later updates move
    # the policy away from pi_prox by more than 5% on some tokens at this learning rate.
    assert single["clip_fraction"] == 0.0 and metrics["clip_fraction"] > 0.0
    # The no-grad proximal forward agrees with the behaviour logprobs (the model's own).
    assert metrics["mismatch_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["token_staleness"] == {0: 2 * (9 + 6)}


def test_mini_batches_are_capped_at_the_number_of_micro_batches(tokenizer):
    model = tiny(tokenizer)
    learner = RLLearner(model, RLConfig(seq_len=32, rows=4, mini_batches=8))
    assert learner.step(self_sampled_rows(model, [1.0, 0.0]))["updates"] == 1  # one micro-batch holds all rows


def test_rows_layout_puts_one_thread_per_row_by_length_within_the_token_budget():
    rows = [
        thread(e, "p", float(i % 2), list(range(10, 14 + n)), 4, [F] * 4 + [T] * n, [-0.5] * n, [0] * n, thread_id)
        for i, e in enumerate("abcd")
        for thread_id, n in enumerate((6 + i, 3))
    ]  # fmt: skip
    batch = build_batch(rows, estimator="grpo", seq_len=16, rows_per_micro_batch=2, layout="rows")
    packed = [mb.packed for mb in batch.micro_batches]
    assert all(p.one_per_row and (p.segment_ids.max(axis=1) <= 1).all() for p in packed)
    assert all(p.input_ids.shape[0] * p.input_ids.shape[1] <= 32 for p in packed)  # rows x width <= 2 x 16
    widths = [p.input_ids.shape[1] for p in packed]
    assert widths == sorted(widths) and sum(p.num_sequences for p in packed) == 8  # shortest first, all threads
    packed_layout = build_batch(rows, estimator="grpo", seq_len=16, rows_per_micro_batch=2)
    assert sum(mb.loss_mask.sum() for mb in batch.micro_batches) == sum(mb.loss_mask.sum() for mb in packed_layout.micro_batches)


@pytest.mark.parametrize("normalization", ["token_mean", "episode_mean"])
def test_rows_and_packed_layouts_make_the_same_update(tokenizer, normalization):
    """Causal attention without a mask over one thread per row equals the block-diagonal
    mask over packed rows: same metrics, same weights after the step."""
    rows = self_sampled_rows(tiny(tokenizer), [1.0, 0.0, 1.0])
    results = []
    for layout in ("packed", "rows"):
        model = tiny(tokenizer)
        learner = RLLearner(model, RLConfig(lr=1e-3, seq_len=32, rows=2, layout=layout, normalization=normalization))
        metrics = learner.step(rows)
        results.append((metrics, model.state_dict()))
    (packed_metrics, packed_weights), (rows_metrics, rows_weights) = results
    for key in ("loss", "policy_loss", "entropy", "mean_advantage"):
        assert rows_metrics[key] == pytest.approx(packed_metrics[key], abs=1e-6)
    # AdamW at lr 1e-3 moves each weight by up to 1e-3 whatever its gradient's size, so a
    # near-zero gradient that float reordering nudges can move by ~1e-5; a wrong mask would
    # move many weights by ~1e-3.
    torch.testing.assert_close(rows_weights, packed_weights, rtol=0, atol=5e-5)
