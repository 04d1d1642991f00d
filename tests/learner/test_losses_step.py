"""Every loss, estimator and correction through a real learner step on the tiny model.

Each loss raises the logprob of a rewarded episode and lowers the other's. Sequence-level
figures (GSPO's ratio, seq_mask's geometric mean) are exact when an episode's threads
land in different micro-batches, or on different data-parallel ranks: the step equals the
one where the whole episode sits in one micro-batch, on one learner.
"""
from __future__ import annotations

import math
import multiprocessing

import pytest
import torch

from actors.ray_setup import free_port
from learner import rl_step
from learner.episode_stats import EpisodeIndex, episode_means, episode_token_mean
from learner.rl_batch import build_batch
from learner.rl_config import RLConfig
from learner.rl_step import RLLearner
from reasoning.countdown.tokenizer import build_tokenizer
from tests.learner.test_rl_step import mean_trained_logprob, self_sampled_rows, tiny

# Two threads per episode of 14 and 9 tokens: with seq_len 16 and one row per micro-batch
# every thread is a micro-batch of its own (each episode spans two); with seq_len 32 and
# four rows all episodes share one micro-batch.
SPANNING = dict(seq_len=16, rows=1)
WHOLE = dict(seq_len=32, rows=4)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize(
    "settings",
    [
        dict(loss="ppo"),
        # DAPO's clip-higher with verl's dual clip and AReaL's capped-weight mask:
        dict(loss="ppo", clip_low=0.2, clip_high=0.28, dual_clip=3.0, weight_cap_mode="mask"),
        dict(loss="gspo", normalization="episode_mean"),
        dict(loss="cispo"),
        dict(loss="ppo", estimator="reinforce_pp"),
        dict(loss="ppo", estimator="reinforce_pp_baseline", normalization="seq_mean_token_sum"),
        dict(loss="ppo", off_policy="icepop"),
        dict(loss="cispo", off_policy="seq_mask"),
    ],
    ids=["ppo", "ppo-dual-clip-mask", "gspo", "cispo", "reinforce_pp", "reinforce_pp_baseline", "icepop", "seq_mask"],
)
def test_each_loss_raises_the_rewarded_episode_and_lowers_the_other(tokenizer, settings):
    model = tiny(tokenizer)
    rows = self_sampled_rows(model, [1.0, 0.0])
    config = RLConfig(**{"estimator": "dr_grpo", "lr": 1e-3, "grad_clip": 0.0, **WHOLE, **settings})
    before = {e: mean_trained_logprob(model, rows, e) for e in ("p0", "p1")}
    metrics = RLLearner(model, config).step(rows)
    after = {e: mean_trained_logprob(model, rows, e) for e in ("p0", "p1")}
    assert after["p0"] > before["p0"] and after["p1"] < before["p1"]
    # The behaviour logprobs are the model's own: weight 1 everywhere, nothing masked or cut.
    assert metrics["importance_weight"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["masked_fraction"] == metrics["truncated_fraction"] == metrics["dual_clip_fraction"] == 0.0


def test_episode_means_add_micro_batches_into_exact_per_episode_means():
    # Episode 0: tokens 1, 2 in micro-batch 0 and 6 in micro-batch 1 -> (1 + 2 + 6) / 3 = 3.
    # Episode 1: token 4 in micro-batch 1 (the 9s are off the mask) -> 4.
    import numpy as np

    masks = [np.array([1, 1, 0], np.float32), np.array([1, 1, 0], np.float32)]
    ids = [np.array([0, 0, 0]), np.array([0, 1, 1])]
    index = EpisodeIndex(masks, ids, 2)
    assert index.spans and index.touching([1]) == [0, 1] and index.episodes == [{0}, {0, 1}]
    values = {0: torch.tensor([1.0, 2.0, 9.0]), 1: torch.tensor([6.0, 4.0, 9.0])}
    assert episode_means(values, masks, ids, index).tolist() == [3.0, 4.0]
    # On two ranks each passes its own micro-batch; `reduce` adds the partial sums.
    partial = [episode_means({i: values[i]}, masks, ids, index, reduce=lambda s: s) for i in (0, 1)]
    assert (partial[0] + partial[1]).tolist() == [3.0, 4.0]


def two_layouts(tokenizer, rows, settings):
    """(metrics, weights) of one step with every episode split over micro-batches, and whole."""
    results = []
    for layout in (SPANNING, WHOLE):
        model = tiny(tokenizer)
        config = RLConfig(**{"estimator": "dr_grpo", "lr": 1e-3, "grad_clip": 0.0, **layout, **settings})
        batch = build_batch(rows, estimator="dr_grpo", seq_len=config.seq_len, rows_per_micro_batch=config.rows)
        micro = batch.micro_batches
        index = EpisodeIndex([m.loss_mask for m in micro], [m.episode_index for m in micro], 2)
        assert index.spans == (layout is SPANNING)
        results.append((RLLearner(model, config).step(rows), model.state_dict()))
    return results


def test_gspo_ratio_is_exact_when_an_episode_spans_micro_batches(tokenizer, monkeypatch):
    # Two epochs: the second update's s_i != 1 needs every token of the episode at the current
    # weights; split over micro-batches, a no-grad forward of both gives the same s_i as one
    # micro-batch holding the episode (a mean over each micro-batch's part alone would differ
    # by ~0.03 at this learning rate). Each pass's per-token log s_i is recorded by episode.
    seen: list[dict[int, float]] = []
    original = rl_step.policy_terms

    def spy(config, logprobs, prox, behav, adv, mask, episode_ids, **kw):
        ratio = kw.get("sequence_log_ratio")
        if ratio is None:  # computed inside the loss from this micro-batch
            ratio = episode_token_mean(logprobs - prox, mask, episode_ids)
        on = mask > 0
        seen.append({int(e): float(r) for e, r in zip(episode_ids[on], ratio[on])})
        return original(config, logprobs, prox, behav, adv, mask, episode_ids, **kw)

    monkeypatch.setattr(rl_step, "policy_terms", spy)
    rows = self_sampled_rows(tiny(tokenizer), [1.0, 0.0])
    (split, split_weights), (whole, whole_weights) = two_layouts(
        tokenizer, rows, dict(loss="gspo", normalization="episode_mean", ppo_epochs=2)
    )
    split_seen, whole_seen = seen[:8], seen[8:]  # split: 2 updates x 4 micro-batches (a thread each); whole: 2 x 1
    assert [len(d) for d in whole_seen] == [2, 2] and all(len(d) == 1 for d in split_seen)
    assert whole_seen[0] == {0: 0.0, 1: 0.0}  # the first update: pi_theta = pi_prox, s_i = 1
    assert abs(whole_seen[1][0]) > 0.05
    for part in split_seen[4:]:  # every micro-batch of an episode sees the whole episode's s_i
        assert part == pytest.approx({e: whole_seen[1][e] for e in part}, abs=1e-5)
    assert split["updates"] == whole["updates"] == 2 and whole["clip_fraction"] > 0
    for key in ("loss", "policy_loss", "clip_fraction"):
        assert split[key] == pytest.approx(whole[key], abs=1e-6)
    torch.testing.assert_close(split_weights, whole_weights, rtol=0, atol=1e-4)  # two AdamW updates at lr 1e-3


def test_seq_mask_over_a_split_episode_masks_by_its_whole_tree(tokenizer):
    # p0: behaviour logprobs 0.3 lower on the root's 9 tokens (rho = e^0.3 there, 1.35 alone:
    # outside [0.8, 1.25]) and equal on the child's 6: over the tree mean 0.3 * 9 / 15 = 0.18,
    # g = e^0.18 = 1.197, kept with weight g. p1: 0.5 lower on all 15: g = e^0.5, masked.
    # Token mean over 30 tokens: masked 15 / 30 = 0.5, mean weight 15 * e^0.18 / 30.
    rows = self_sampled_rows(tiny(tokenizer), [1.0, 0.0])
    for row in rows:
        shift = {("p0", 0): 0.3, ("p1", 0): 0.5, ("p1", 1): 0.5}.get((row["episode_id"], row["thread_id"]), 0.0)
        row["logprobs"] = [lp - shift for lp in row["logprobs"]]
    (split, split_weights), (whole, whole_weights) = two_layouts(tokenizer, rows, dict(off_policy="seq_mask"))
    for metrics in (split, whole):
        assert metrics["masked_fraction"] == pytest.approx(0.5)
        assert metrics["importance_weight"] == pytest.approx(math.exp(0.18) / 2, abs=1e-4)
    torch.testing.assert_close(split_weights, whole_weights, rtol=0, atol=5e-5)


# ---- two data-parallel ranks (gloo, no Ray) ---------------------------------------------------
def _rank(rank: int, port: int, settings: dict, rows: list, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model = tiny(build_tokenizer())
    config = RLConfig(**{"estimator": "dr_grpo", "lr": 1e-3, "grad_clip": 0.0, **SPANNING, **settings})
    RLLearner(model, config, rank=rank, world_size=2).step(rows)
    out[rank] = {k: v.clone() for k, v in model.state_dict().items()}
    dist.destroy_process_group()


def test_two_ranks_make_the_update_of_one_learner_with_sequence_level_figures(tokenizer):
    # GSPO over two epochs with seq_mask and seq_mean_token_sum: the episodes' threads are on
    # both ranks, so the per-episode sums and the loss weights must be global.
    rows = self_sampled_rows(tiny(tokenizer), [1.0, 0.0, 1.0])
    for row in rows:
        if row["thread_id"] == 0:
            row["logprobs"] = [lp - 0.1 for lp in row["logprobs"]]  # a little stale: g = e^0.06 per episode
    settings = dict(loss="gspo", ppo_epochs=2, off_policy="seq_mask", normalization="seq_mean_token_sum")
    single = tiny(tokenizer)
    config = RLConfig(**{"estimator": "dr_grpo", "lr": 1e-3, "grad_clip": 0.0, **SPANNING, **settings})
    RLLearner(single, config).step(rows)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        out = manager.dict()
        port = free_port()
        ranks = [context.Process(target=_rank, args=(r, port, settings, rows, out)) for r in (0, 1)]
        for p in ranks:
            p.start()
        for p in ranks:
            p.join(timeout=120)
        assert all(p.exitcode == 0 for p in ranks)
        states = [dict(out[0]), dict(out[1])]
    torch.testing.assert_close(states[0], states[1], rtol=0, atol=0)  # the replicas stay equal
    torch.testing.assert_close(states[0], single.state_dict(), rtol=0, atol=5e-5)
