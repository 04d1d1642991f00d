"""The `shared` layout (prefix-shared thread trees) trains exactly what `packed` trains, on fewer tokens."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.models import init_model
from learner.presets import ModelConfig
from learner.rl_batch import build_batch
from learner.rl_config import RLConfig
from learner.rl_step import RLLearner
from reasoning.countdown.tokenizer import build_tokenizer
from tests.episode_rows import thread_row


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def tiny(tokenizer):
    torch.set_num_threads(1)
    return init_model(ModelConfig(preset="tiny", init_seed=0), tokenizer)


@torch.no_grad()
def own_logprobs(model, token_ids, num_prompt):
    logp = torch.log_softmax(model(input_ids=torch.tensor([token_ids])).logits[0].float(), -1)
    return [logp[t - 1, token_ids[t]].item() for t in range(num_prompt, len(token_ids))]


def parallel_episodes(model, rewards, seed=0):
    """Per reward, a parallel-block episode of one group (one shared prompt): the parent
    thinks, forks two branches that continue its whole context, is joined with them
    (observed tokens) and concludes; behaviour logprobs from `model` itself."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(20, 200, 6).tolist()
    rows = []
    for e, reward in enumerate(rewards):
        thinking = rng.integers(20, 200, 5).tolist()
        fork = prompt + thinking
        bodies = [rng.integers(20, 200, n).tolist() for n in (4, 7)]
        join, conclusion = bodies[0] + bodies[1], rng.integers(20, 200, 3).tolist()
        parent = fork + join + conclusion
        trainable = [False] * len(prompt) + [True] * len(thinking) + [False] * len(join) + [True] * len(conclusion)
        threads = [(parent, len(prompt), trainable)]
        threads += [(fork + b, len(fork), [False] * len(fork) + [True] * len(b)) for b in bodies]
        for t, (ids, num_prompt, flags) in enumerate(threads):
            rows.append(thread_row(
                f"e{e}", "g#0", reward=reward, token_ids=ids, num_prompt_tokens=num_prompt, trainable=flags,
                logprobs=own_logprobs(model, ids, num_prompt), versions=[0] * (len(ids) - num_prompt), thread_id=t,
                parent_id=-1 if t == 0 else 0, spawn_index=t - 1, depth=int(t > 0), role="root" if t == 0 else "child",
            ))  # fmt: skip
    return rows


def trained_positions(batch):
    """Sorted (label, behaviour logprob, advantage, version) of every trained position."""
    out = []
    for mb in batch.micro_batches:
        on = mb.loss_mask > 0
        out += zip(mb.packed.labels[on].tolist(), mb.behaviour_logprobs[on].round(6).tolist(),
                   mb.advantages[on].tolist(), mb.versions[on].tolist())  # fmt: skip
    return sorted(out)


def real_tokens(batch):
    return sum(mb.packed.num_tokens for mb in batch.micro_batches)


def test_shared_layout_keeps_every_trained_position_and_computes_prefixes_once(tokenizer):
    rows = parallel_episodes(tiny(tokenizer), [1.0, 0.0, 1.0])
    kwargs = dict(estimator="grpo", seq_len=128, rows_per_micro_batch=2)
    shared, packed = build_batch(rows, layout="shared", **kwargs), build_batch(rows, layout="packed", **kwargs)
    assert trained_positions(shared) == trained_positions(packed)
    # Per episode the packed layout repeats the 11-token fork in each branch (and the
    # prompt in every episode); shared computes the prompt once and each fork once, plus
    # one copy per branch point.
    assert real_tokens(packed) == sum(len(r["token_ids"]) for r in rows)
    assert real_tokens(shared) < 0.6 * real_tokens(packed)


def test_a_group_too_long_for_a_row_is_split_into_episodes(tokenizer):
    rows = parallel_episodes(tiny(tokenizer), [1.0, 0.0])
    one_episode = build_batch([r for r in rows if r["episode_id"] == "e0"], estimator="grpo", seq_len=64,
                              rows_per_micro_batch=1, layout="shared")  # fmt: skip
    width = one_episode.micro_batches[0].packed.num_tokens
    split = build_batch(rows, estimator="grpo", seq_len=width, rows_per_micro_batch=1, layout="shared")
    assert len(split.micro_batches) == 2 and trained_positions(split) == trained_positions(
        build_batch(rows, estimator="grpo", seq_len=width, rows_per_micro_batch=1, layout="packed")
    )


@pytest.mark.parametrize("normalization", ["token_mean", "episode_mean"])
def test_shared_and_packed_layouts_make_the_same_update(tokenizer, normalization):
    rows = parallel_episodes(tiny(tokenizer), [1.0, 0.0, 1.0])
    results = []
    for layout in ("packed", "shared"):
        model = tiny(tokenizer)
        learner = RLLearner(model, RLConfig(lr=1e-3, seq_len=128, rows=2, layout=layout, normalization=normalization))
        results.append((learner.step(rows), model.state_dict()))
    (packed_metrics, packed_weights), (shared_metrics, shared_weights) = results
    for key in ("loss", "policy_loss", "mean_advantage"):
        assert shared_metrics[key] == pytest.approx(packed_metrics[key], abs=1e-6)
    assert shared_metrics["tokens"] < packed_metrics["tokens"]
    torch.testing.assert_close(shared_weights, packed_weights, rtol=0, atol=5e-5)


def test_gradient_checkpointing_makes_the_same_update(tokenizer):
    rows = parallel_episodes(tiny(tokenizer), [1.0, 0.0])
    results = []
    for checkpointing in (False, True):
        model = tiny(tokenizer)
        learner = RLLearner(model, RLConfig(lr=1e-3, seq_len=128, rows=2, layout="shared", gradient_checkpointing=checkpointing))
        results.append((learner.step(rows)["loss"], model.state_dict()))
    assert results[1][0] == pytest.approx(results[0][0], abs=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=5e-5)
