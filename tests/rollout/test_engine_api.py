"""The async Engine API on the tiny model: bad requests, abort, weight updates, stops, faults."""
from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest

from rollout import Engine, EngineConfig, FinishReason, SamplingParams, make_engine
from rollout.errors import EngineDeadError, WeightUpdateError
from tests.rollout.helpers import gather, random_prompts

GREEDY = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
LONG = SamplingParams(max_tokens=400, temperature=0, ignore_eos=True)


async def tokens_generated(engine, n: int) -> None:
    """Wait until the engine has generated `n` more tokens than when called."""
    target = engine.stats().tokens_generated + n
    while engine.stats().tokens_generated < target:
        await asyncio.sleep(0.001)


@pytest.fixture(params=["paged", "hf"])
def engine(request, tiny, tokenizer):
    engine = make_engine(request.param, tiny, tokenizer, EngineConfig(backend=request.param, num_kv_blocks=64))
    yield engine
    engine.close()


def test_both_backends_implement_the_protocol(engine):
    assert isinstance(engine, Engine)


def test_bad_requests_fail_alone_and_the_rest_are_served(engine):
    good = random_prompts([6, 9], seed=3)
    window = engine.core.max_model_len
    prompts = [good[0], [1] * window, [1, 5, 1111], [], good[1]]
    results = gather(engine, prompts, GREEDY)
    assert [r.finish_reason for r in results] == [
        FinishReason.LENGTH, FinishReason.ERROR, FinishReason.ERROR, FinishReason.ERROR, FinishReason.LENGTH,
    ]
    assert f"prompt of {window} tokens leaves no room in the context window of {window}" in results[1].error
    assert "token id 1111 at prompt position 2 is outside the vocabulary [0, 1111)" in results[2].error
    assert "empty prompt" in results[3].error
    assert [len(results[i].token_ids) for i in (0, 4)] == [8, 8]
    assert gather(engine, good, GREEDY)[1].token_ids == results[4].token_ids  # unaffected by its neighbours


def test_a_request_id_in_flight_twice_is_an_error(engine):
    results = gather(engine, random_prompts([4, 4]), GREEDY, ids=["same", "same"])
    assert results[0].finish_reason is FinishReason.LENGTH
    assert results[1].finish_reason is FinishReason.ERROR and "already in flight" in results[1].error


def test_update_weights_lands_between_steps_and_versions_every_token(tiny, tokenizer):
    engine = make_engine("paged", tiny, tokenizer, EngineConfig(num_kv_blocks=64))
    prompt = random_prompts([12], seed=4)[0]
    before = gather(engine, [prompt], GREEDY)[0]
    embed = tiny.state_dict()["model.embed_tokens.weight"].numpy()
    new = {"model.embed_tokens.weight": embed[::-1].copy()}  # another policy

    async def main():
        request = asyncio.create_task(engine.generate(prompt, LONG))
        await tokens_generated(engine, 5)
        await engine.update_weights(new, version=1)
        assert engine.version == 1
        return await request

    spanning = asyncio.run(main())
    versions = spanning.versions
    switch = versions.index(1)
    assert 0 < switch < len(versions) and set(versions[:switch]) == {0} and set(versions[switch:]) == {1}
    after = gather(engine, [prompt], GREEDY)[0]
    assert after.versions == [1] * 8 and after.token_ids != before.token_ids
    assert after.num_cached_prompt_tokens == 0  # the prefix cache was reset: no stale KV
    engine.close()


def test_a_bad_weight_update_changes_nothing(engine, tiny):
    prompt = random_prompts([7], seed=6)[0]
    before = gather(engine, [prompt], GREEDY)[0].token_ids
    embed = tiny.state_dict()["model.embed_tokens.weight"].numpy()
    bad_updates = [
        ({"model.embed_tokens.weight": embed[::-1].copy(), "model.layers.0.mlp.nonsense": np.zeros(3)}, "unknown parameter names"),
        ({"model.norm.weight": np.zeros(7, dtype=np.float32)}, r"model.norm.weight: shape \(7,\), expected \(128,\)"),
    ]

    async def main():
        for update, message in bad_updates:
            with pytest.raises(WeightUpdateError, match=message):
                await engine.update_weights(update, version=9)

    asyncio.run(main())
    assert engine.version == 0
    assert gather(engine, [prompt], GREEDY)[0].token_ids == before


def test_abort_returns_the_tokens_so_far_and_frees_blocks(tiny, tokenizer):
    engine = make_engine("paged", tiny, tokenizer, EngineConfig(num_kv_blocks=64))

    async def main():
        request = asyncio.create_task(engine.generate(random_prompts([20])[0], LONG, request_id="r"))
        await tokens_generated(engine, 3)
        assert engine.stats().kv_blocks_in_use > 0
        assert engine.abort("r") and not engine.abort("unknown")
        return await request

    aborted = asyncio.run(main())
    assert aborted.finish_reason is FinishReason.ABORT
    assert 3 <= len(aborted.token_ids) < 400
    assert len(aborted.logprobs) == len(aborted.versions) == len(aborted.token_ids)
    assert engine.stats().kv_blocks_in_use == 0 and engine.stats().num_running == 0
    engine.close()


def test_abort_of_a_queued_request(engine):
    async def main():
        first = asyncio.create_task(engine.generate(random_prompts([5])[0], GREEDY))
        queued = asyncio.create_task(engine.generate(random_prompts([6])[0], GREEDY, request_id="q"))
        await asyncio.sleep(0)  # both submitted, no step has run
        engine.abort("q")
        return await first, await queued

    first, queued = asyncio.run(main())
    assert first.finish_reason is FinishReason.LENGTH
    assert queued.finish_reason is FinishReason.ABORT and queued.token_ids == []


def test_a_cancelled_caller_aborts_its_request(tiny, tokenizer):
    engine = make_engine("paged", tiny, tokenizer, EngineConfig(num_kv_blocks=64))

    async def main():
        request = asyncio.create_task(engine.generate(random_prompts([20])[0], LONG))
        await tokens_generated(engine, 2)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await engine.generate([1, 2, 3], GREEDY)  # a later request is served once the abort landed

    asyncio.run(main())
    assert engine.stats().kv_blocks_in_use == 0
    engine.close()


def test_stop_strings_cut_both_backends_at_the_same_token(tiny, tokenizer):
    prompt = random_prompts([10], seed=8)[0]
    free = SamplingParams(max_tokens=20, temperature=1.0, seed=2, ignore_eos=True)
    engines = {b: make_engine(b, tiny, tokenizer, EngineConfig(backend=b)) for b in ("paged", "hf")}
    # hf samples differently, so find the stop in greedy output, which both share.
    greedy = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    reference = gather(engines["hf"], [prompt], greedy)[0].token_ids
    stop = tokenizer.decode(reference[5:7])
    cut = next(n for n in range(1, 21) if stop in tokenizer.decode(reference[:n]))
    stopping = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True, stop=(stop,))
    for backend, engine in engines.items():
        completion = gather(engine, [prompt], stopping)[0]
        assert completion.finish_reason is FinishReason.STOP_SEQUENCE, backend
        assert completion.token_ids == reference[:cut], backend
    seeded = gather(engines["paged"], [prompt, prompt], free)
    assert seeded[0].token_ids == seeded[1].token_ids  # same seed, same tokens
    for engine in engines.values():
        engine.close()


def test_a_failing_step_fails_every_caller_and_the_engine(tiny, tokenizer, monkeypatch):
    engine = make_engine("paged", tiny, tokenizer, EngineConfig(num_kv_blocks=64))

    def broken(chunks):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(engine.core.runner, "run", broken)

    async def main():
        results = await asyncio.gather(
            *(engine.generate(p, GREEDY) for p in random_prompts([4, 5])), return_exceptions=True
        )
        assert all(isinstance(r, EngineDeadError) for r in results)
        assert isinstance(results[0].__cause__, RuntimeError)
        with pytest.raises(EngineDeadError):
            await engine.generate([1, 2], GREEDY)

    asyncio.run(main())
    engine.close()


def test_stats_count_tokens_and_blocks(tiny, tokenizer):
    engine = make_engine("paged", tiny, tokenizer, EngineConfig(num_kv_blocks=64, block_size=16))
    gather(engine, random_prompts([20, 30], seed=9), GREEDY)
    stats = engine.stats()
    assert stats.tokens_generated == 16 and stats.prefill_tokens_computed == 50
    assert stats.kv_blocks_total == 64 and stats.kv_blocks_in_use == 0
    assert stats.num_running == stats.num_waiting == 0
    engine.close()


def test_hf_batches_requests_with_the_same_sampling(tiny, tokenizer, monkeypatch):
    engine = make_engine("hf", tiny, tokenizer, EngineConfig(backend="hf", max_num_seqs=8))
    calls = []
    generate = engine.core.model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    monkeypatch.setattr(engine.core.model, "generate", counting)  # undone after the test: tiny is shared
    sampled = SamplingParams(max_tokens=4, temperature=0.7, ignore_eos=True)
    prompts = random_prompts([3, 4, 5, 6, 7])

    async def main():
        return await asyncio.gather(
            *(engine.generate(p, GREEDY) for p in prompts[:3]),
            *(engine.generate(p, sampled) for p in prompts[3:]),
            engine.generate(prompts[0], SamplingParams(max_tokens=4, temperature=0.7, seed=1)),
        )

    results = asyncio.run(main())
    assert sorted(calls) == [1, 2, 3]  # greedy together, unseeded sampled together, the seeded one alone
    assert all(len(r.token_ids) in (4, 8) for r in results)
    engine.close()


@pytest.mark.parametrize("backend", ["paged", "hf"])
def test_tokens_carry_the_version_they_were_sampled_with(backend, tiny, tokenizer):
    model = copy.deepcopy(tiny)  # the hf backend writes updates into the model it runs
    engine = make_engine(backend, model, tokenizer, EngineConfig(backend=backend, num_kv_blocks=64))
    prompt = random_prompts([9], seed=10)[0]
    before = gather(engine, [prompt], GREEDY)[0]
    embed = model.state_dict()["model.embed_tokens.weight"].numpy()
    asyncio.run(engine.update_weights({"model.embed_tokens.weight": embed * 3.0}, version=3))
    after = gather(engine, [prompt], GREEDY)[0]
    assert before.versions == [0] * 8 and after.versions == [3] * 8 and engine.stats().weight_version == 3
    assert after.logprobs != before.logprobs
    engine.close()


def test_a_closed_engine_refuses_work(tiny, tokenizer):
    engine = make_engine("paged", tiny, tokenizer, EngineConfig(num_kv_blocks=16))
    gather(engine, [[1, 2, 3]], GREEDY)
    engine.close()
    with pytest.raises(EngineDeadError, match="closed"):
        gather(engine, [[1, 2, 3]], GREEDY)
