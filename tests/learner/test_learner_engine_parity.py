"""Trainer-engine parity: the learner's logprobs of engine-sampled sequences equal the
engine's own sampled-token logprobs, for each embedded engine backend and each learner
head; the chunked head equals the full one in values and entropies.

The `tiny` preset with fixed-seed random weights, fp32, sampled at temperature 1 (the
behaviour policy the learner corrects for). The sequences go through the learner's real
path: episode-table rows, packing into shared rows, label alignment, trimming.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from learner.models import init_model
from learner.presets import ModelConfig
from learner.rl_batch import build_batch
from learner.label_logprobs import label_logprobs
from reasoning.countdown.tokenizer import build_tokenizer
from rollout import EngineConfig, SamplingParams, make_engine

SAMPLING = SamplingParams(max_tokens=20, temperature=1.0, seed=3, ignore_eos=True)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return init_model(ModelConfig(preset="tiny", init_seed=0), build_tokenizer()).float().eval()


def sampled_rows(model, backend: str) -> list[dict]:
    engine = make_engine(backend, model, build_tokenizer(), EngineConfig(backend=backend, num_kv_blocks=64))
    prompts = [np.random.default_rng(i).integers(20, 1000, n).tolist() for i, n in enumerate([5, 12, 30])]

    async def generate():
        return await asyncio.gather(*(engine.generate(p, SAMPLING) for p in prompts))

    try:
        completions = asyncio.run(generate())
    finally:
        engine.close()
    return [
        {
            "episode_id": f"e{i}", "group_id": f"p{i}#0", "problem_id": f"p{i}", "thread_id": 0,
            "parent_id": -1, "depth": 0, "role": "root", "token_ids": prompt + list(c.token_ids),
            "num_prompt_tokens": len(prompt), "trainable": [False] * len(prompt) + [True] * len(c.token_ids),
            "logprobs": list(c.logprobs), "versions": [0] * len(c.token_ids), "finish_reason": "length", "reward": 1.0,
        }  # fmt: skip
        for i, (prompt, c) in enumerate(zip(prompts, completions))
    ]


@pytest.mark.parametrize("backend", ["paged", "hf"])
@pytest.mark.parametrize("head", ["full", "chunked"])
def test_learner_logprobs_match_the_engines_sampled_logprobs(model, backend, head):
    rows = sampled_rows(model, backend)
    batch = build_batch(rows, estimator="grpo", seq_len=64, rows_per_micro_batch=2)
    with torch.no_grad():
        for mb in batch.micro_batches:
            logprobs, _ = label_logprobs(model, mb, head)
            on = mb.loss_mask > 0
            assert on.sum() > 0
            np.testing.assert_allclose(logprobs.numpy()[on], mb.behaviour_logprobs[on], atol=1e-4, rtol=0)


def test_the_chunked_head_equals_the_full_head_with_gradients(model):
    rows = sampled_rows(model, "paged")
    (mb,) = build_batch(rows, estimator="grpo", seq_len=64, rows_per_micro_batch=4).micro_batches
    results = {}
    for head in ("full", "chunked"):
        model.zero_grad()
        logprobs, entropy = label_logprobs(model, mb, head)
        (logprobs.sum() + 0.1 * entropy.sum()).backward()
        results[head] = (logprobs.detach(), entropy.detach(), model.model.layers[0].mlp.up_proj.weight.grad.clone())
    for full, chunked in zip(results["full"], results["chunked"]):
        torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-4)
    assert (results["full"][1] > 0).sum() == int((mb.packed.segment_ids > 0).sum())  # entropy on every real token
