"""The `vllm` backend against the `paged` engine on the tiny preset loaded from disk.

Covered: greedy tokens (alone and batched) and their logprobs equal the paged engine's;
sampled tokens' logprobs equal a full forward of the model; seeds; stop tokens and stop
strings cut where the paged engine cuts; bad requests fail alone with the shared
messages; prefix caching; weight updates (a request spanning one carries both versions,
later outputs equal the paged engine's after the same update, no KV from older weights
is reused, a bad update changes nothing); abort and a cancelled caller free the request.
Not covered: vLLM's sampled tokens against the paged engine's (different samplers and
random streams), GPUs, preemption under KV pressure.

One vLLM engine serves the whole module (start-up takes 1-3 minutes on a 2-core CPU);
tests that change its weights put the original weights back.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

pytest.importorskip("vllm")

from rollout import Engine, EngineConfig, FinishReason, SamplingParams, make_engine
from rollout.errors import WeightUpdateError
from tests.rollout.helpers import gather, one_by_one, random_prompts

GREEDY = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
LONG = SamplingParams(max_tokens=400, temperature=0, ignore_eos=True)
PROMPTS = random_prompts([5, 17, 33, 40], seed=1)


@pytest.fixture(scope="module")
def engines(tiny_dir, tokenizer):
    vllm = make_engine("vllm", tiny_dir, tokenizer, EngineConfig(backend="vllm", kv_cache_mb=64, max_num_seqs=16))
    paged = make_engine("paged", tiny_dir, tokenizer, EngineConfig(num_kv_blocks=256))
    yield vllm, paged
    vllm.close()
    paged.close()


def full_forward_logprobs(model, prompt, output) -> torch.Tensor:
    ids = torch.tensor([prompt + output])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(output)[:, None])[:, 0]


def test_the_backend_implements_the_protocol(engines):
    assert isinstance(engines[0], Engine)


def test_greedy_tokens_and_logprobs_equal_the_paged_engine(engines):
    vllm, paged = engines
    reference = one_by_one(paged, PROMPTS, GREEDY)
    for completions in (one_by_one(vllm, PROMPTS, GREEDY), gather(vllm, PROMPTS, GREEDY)):
        assert [c.token_ids for c in completions] == [c.token_ids for c in reference]
        for ours, theirs in zip(completions, reference):
            np.testing.assert_allclose(ours.logprobs, theirs.logprobs, atol=1e-3, rtol=0)
            assert ours.versions == [0] * 24 and ours.finish_reason is FinishReason.LENGTH


def test_sampled_logprobs_equal_a_full_forward(engines, tiny):
    sampling = SamplingParams(max_tokens=16, temperature=0.8, top_k=50, top_p=0.9, seed=3, ignore_eos=True)
    for completion in gather(engines[0], PROMPTS, sampling):
        expected = full_forward_logprobs(tiny, completion.prompt_ids, completion.token_ids)
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-3, rtol=0)


def test_a_seed_repeats_its_tokens_batched_and_alone(engines):
    vllm, _ = engines
    sampling = SamplingParams(max_tokens=16, temperature=1.0, seed=11, ignore_eos=True)
    alone = [c.token_ids for c in one_by_one(vllm, PROMPTS, sampling)]
    assert [c.token_ids for c in gather(vllm, PROMPTS, sampling)] == alone
    other = SamplingParams(max_tokens=16, temperature=1.0, seed=12, ignore_eos=True)
    assert [c.token_ids for c in gather(vllm, PROMPTS, other)] != alone


def test_stop_tokens_and_stop_strings_cut_where_the_paged_engine_cuts(engines, tokenizer):
    vllm, paged = engines
    reference = gather(paged, PROMPTS[2:3], GREEDY)[0].token_ids
    stop_token = SamplingParams(max_tokens=24, temperature=0, stop_token_ids=(reference[6],))
    stop_string = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, stop=(tokenizer.decode(reference[5:7]),))
    for sampling, reason in ((stop_token, FinishReason.STOP_TOKEN), (stop_string, FinishReason.STOP_SEQUENCE)):
        ours, theirs = gather(vllm, PROMPTS[2:3], sampling)[0], gather(paged, PROMPTS[2:3], sampling)[0]
        assert (ours.finish_reason, theirs.finish_reason) == (reason, reason)
        assert ours.token_ids == theirs.token_ids and len(ours.token_ids) <= 7
        assert len(ours.logprobs) == len(ours.versions) == len(ours.token_ids)


def test_bad_requests_fail_alone_with_the_shared_messages(engines):
    vllm, paged = engines
    window = vllm.max_model_len
    prompts = [PROMPTS[0], [1] * window, [1, 5, 1111], [], PROMPTS[1]]
    ids = [f"bad-{i}" for i in range(len(prompts))]
    ours, theirs = gather(vllm, prompts, GREEDY, ids=ids), gather(paged, prompts, GREEDY, ids=ids)
    assert [c.finish_reason for c in ours] == [c.finish_reason for c in theirs]
    assert [c.error for c in ours] == [c.error for c in theirs]
    assert [ours[i].token_ids for i in (0, 4)] == [theirs[i].token_ids for i in (0, 4)]
    assert gather(vllm, [PROMPTS[0], PROMPTS[0]], GREEDY, ids=["same", "same"])[1].error.endswith("already in flight")


def test_a_repeated_prefix_comes_from_the_cache(engines):
    vllm, _ = engines
    prompt = random_prompts([300], seed=5)[0]
    first, second = one_by_one(vllm, [prompt, prompt], GREEDY)
    assert first.num_cached_prompt_tokens == 0 and 0 < second.num_cached_prompt_tokens < 300
    assert second.token_ids == first.token_ids
    assert vllm.stats().prefix_cache_hit_tokens >= second.num_cached_prompt_tokens


def perturbed(tiny, seed: int) -> dict[str, np.ndarray]:
    """Every parameter with noise added, by Hugging Face name (a tied head = the embedding)."""
    generator = torch.Generator().manual_seed(seed)
    state = {name: t + 0.05 * torch.randn(t.shape, generator=generator) for name, t in tiny.state_dict().items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return {name: t.numpy() for name, t in state.items()}


async def after_a_few_tokens(engine, request):
    """Wait until `request` (a task) has sampled several tokens: a short greedy request
    submitted with it finishes first, since both decode in the same batches."""
    await engine.generate(PROMPTS[0], SamplingParams(max_tokens=6, temperature=0, ignore_eos=True))
    assert not request.done()


def test_a_weight_update_changes_outputs_and_versions(engines, tiny):
    vllm, paged = engines
    before = gather(vllm, PROMPTS, GREEDY)
    cached = random_prompts([300], seed=7)[0]
    gather(vllm, [cached], GREEDY)
    update = perturbed(tiny, seed=1)

    async def spanning():
        request = asyncio.create_task(vllm.generate(PROMPTS[3], LONG))
        await after_a_few_tokens(vllm, request)
        await vllm.update_weights(update, version=1)
        assert vllm.version == 1
        return await request

    versions = asyncio.run(spanning()).versions
    switch = versions.index(1)
    assert 0 < switch < len(versions) == 400
    assert set(versions[:switch]) == {0} and set(versions[switch:]) == {1}

    asyncio.run(paged.update_weights(update, version=1))
    after = gather(vllm, PROMPTS, GREEDY)
    assert [c.token_ids for c in after] == [c.token_ids for c in gather(paged, PROMPTS, GREEDY)]
    assert [c.token_ids for c in after] != [c.token_ids for c in before]
    assert all(c.versions == [1] * 24 for c in after)
    again = one_by_one(vllm, [cached, cached], GREEDY)
    assert again[0].num_cached_prompt_tokens == 0  # KV of the old weights is never reused
    assert again[1].num_cached_prompt_tokens > 0  # KV of the new weights is

    original = {name: t.numpy() for name, t in tiny.state_dict().items()}
    for engine in engines:
        asyncio.run(engine.update_weights(original, version=2))
    assert [c.token_ids for c in gather(vllm, PROMPTS, GREEDY)] == [c.token_ids for c in before]
    assert vllm.stats().weight_version == 2


def test_a_bad_weight_update_changes_nothing(engines, tiny):
    vllm, _ = engines
    version, before = vllm.version, gather(vllm, PROMPTS[:1], GREEDY)[0].token_ids
    embed = tiny.state_dict()["model.embed_tokens.weight"].numpy()
    bad_updates = [
        ({"model.embed_tokens.weight": embed[::-1].copy(), "model.layers.0.mlp.nonsense": np.zeros(3)}, "unknown parameter names"),
        ({"model.norm.weight": np.zeros(7, dtype=np.float32)}, r"model.norm.weight: shape \(7,\), expected \(128,\)"),
        ({"model.norm.weight": np.zeros(128, dtype=np.int64)}, "not a floating-point type"),
    ]
    for update, message in bad_updates:
        with pytest.raises(WeightUpdateError, match=message):
            asyncio.run(vllm.update_weights(update, version=9))
    assert vllm.version == version
    assert gather(vllm, PROMPTS[:1], GREEDY)[0].token_ids == before


def test_abort_returns_the_tokens_so_far_and_frees_the_request(engines):
    vllm, _ = engines

    async def main():
        request = asyncio.create_task(vllm.generate(PROMPTS[2], LONG, request_id="r"))
        await after_a_few_tokens(vllm, request)
        assert vllm.abort("r") and not vllm.abort("unknown")
        aborted = await request
        return aborted, await vllm.reset_prefix_cache()

    aborted, no_block_in_use = asyncio.run(main())
    assert aborted.finish_reason is FinishReason.ABORT
    assert 0 < len(aborted.token_ids) < 400
    assert len(aborted.logprobs) == len(aborted.versions) == len(aborted.token_ids)
    assert set(aborted.versions) == {vllm.version}
    assert no_block_in_use  # vLLM resets its prefix cache only when no request holds KV
    stats = vllm.stats()
    assert stats.num_running == stats.num_waiting == stats.kv_blocks_in_use == 0
    assert gather(vllm, PROMPTS[:1], GREEDY)[0].finish_reason is FinishReason.LENGTH


def test_a_cancelled_caller_aborts_its_request(engines):
    vllm, _ = engines

    async def main():
        request = asyncio.create_task(vllm.generate(PROMPTS[1], LONG))
        await after_a_few_tokens(vllm, request)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await vllm.generate([1, 2, 3], GREEDY)  # served once the abort landed
        return await vllm.reset_prefix_cache()

    assert asyncio.run(main())
