"""Automatic prefix caching and preemption on the tiny model, with block size 16.

Reused KV must be exactly as good as recomputed KV, so every test also checks that the
greedy tokens equal those of the `hf` backend (or of an unconstrained run).
"""
from __future__ import annotations

import pytest

from benchmarks.engine import fork
from rollout import EngineConfig, SamplingParams, make_engine
from rollout.paged.core import PagedCore
from rollout.requests import Request
from tests.rollout.helpers import gather, one_by_one, random_prompts

GREEDY = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)


def run(core: PagedCore, prompts, sampling=GREEDY, prefix="r"):
    """Add every prompt, step until all finish; completions in prompt order."""
    for i, prompt in enumerate(prompts):
        core.add_request(Request(f"{prefix}{i}", prompt, sampling))
    done = {}
    while core.has_unfinished():
        done.update((c.request_id, c) for c in core.step())
    return [done[f"{prefix}{i}"] for i in range(len(prompts))]


@pytest.fixture(scope="module")
def hf(tiny, tokenizer):
    engine = make_engine("hf", tiny, tokenizer, EngineConfig(backend="hf"))
    yield engine
    engine.close()


def test_a_forked_child_computes_no_prefill_for_shared_blocks(tiny, hf):
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=64))
    parent_prompt = random_prompts([40], seed=1)[0]
    (parent,) = run(core, [parent_prompt], prefix="parent")
    # The parent's KV covers 49 tokens (40 + 9 fed back): three full blocks, 48 tokens.
    child_prompt = parent_prompt + parent.token_ids + [7]  # 51 tokens
    before = core.stats()
    (child,) = run(core, [child_prompt], prefix="child")
    after = core.stats()
    assert child.num_cached_prompt_tokens == 48
    assert after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens == 48
    assert after.prefill_tokens_computed - before.prefill_tokens_computed == 51 - 48
    assert child.token_ids == gather(hf, [child_prompt], GREEDY)[0].token_ids


def test_siblings_share_the_prefix_blocks_while_running(tiny):
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=64))
    prefix = random_prompts([32], seed=2)[0]  # exactly two blocks
    run(core, [prefix], SamplingParams(max_tokens=1, temperature=0), prefix="warm")
    for i in range(3):
        core.add_request(Request(f"s{i}", prefix + [100 + i], GREEDY))
    core.step()
    tables = [seq.block_table for seq in core.scheduler.running]
    assert len(tables) == 3 and all(t[:2] == tables[0][:2] for t in tables)
    assert [core.scheduler.blocks.ref_counts[b] for b in tables[0][:2]] == [3, 3]
    # 2 shared blocks + one own block each
    assert core.stats().kv_blocks_in_use == 2 + 3


def test_fork_benchmark_shares_the_prefix(tiny):
    # 8 children of a 256-token prefix, 64 tokens each: (256 + 8 * 63 KV) over 16-slot blocks.
    cached, uncached = fork(tiny, caching=True), fork(tiny, caching=False)
    assert (cached["prefill_tokens"], uncached["prefill_tokens"]) == (0, 8 * 256)
    assert (cached["kv_blocks"], uncached["kv_blocks"]) == (16 + 8 * 4, 8 * 20)


def test_a_fully_cached_prompt_reruns_only_its_last_token(tiny, hf):
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=64))
    prompt = random_prompts([48], seed=3)[0]
    (first,) = run(core, [prompt], prefix="a")
    before = core.stats()
    (second,) = run(core, [prompt], prefix="b")
    assert second.num_cached_prompt_tokens == 48
    assert core.stats().prefill_tokens_computed - before.prefill_tokens_computed == 0
    assert second.token_ids == first.token_ids == gather(hf, [prompt], GREEDY)[0].token_ids


def test_lru_evicts_old_prefixes_only_when_blocks_run_out(tiny, hf):
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=8))  # 128 token slots
    a, b = random_prompts([48, 100], seed=4)
    (first_a,) = run(core, [a], prefix="a")
    (again_a,) = run(core, [a], prefix="a2")
    assert again_a.num_cached_prompt_tokens == 48  # 3 cached blocks, nothing evicted yet
    run(core, [b], prefix="b")  # 100 + 9 tokens need 7 of the 8 blocks
    assert core.scheduler.blocks.num_evictions > 0
    (evicted_a,) = run(core, [a], prefix="a3")
    assert evicted_a.num_cached_prompt_tokens < 48
    assert evicted_a.token_ids == first_a.token_ids == gather(hf, [a], GREEDY)[0].token_ids


def test_preemption_under_a_tiny_pool_gives_the_same_tokens(tiny, hf):
    # Six requests of 20 + 40 tokens need 4 blocks each at the end: 24 > 10 blocks.
    prompts = random_prompts([20] * 6, seed=5)
    sampling = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=10))
    squeezed = run(core, prompts, sampling)
    assert core.scheduler.num_preemptions > 0
    assert [c.token_ids for c in squeezed] == [c.token_ids for c in one_by_one(hf, prompts, sampling)]
    assert core.stats().kv_blocks_in_use == 0


def test_no_prefix_reuse_when_disabled(tiny):
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=64, enable_prefix_caching=False))
    prompt = random_prompts([40], seed=6)[0]
    run(core, [prompt], prefix="a")
    (again,) = run(core, [prompt], prefix="b")
    assert again.num_cached_prompt_tokens == 0 and core.stats().prefix_cache_hit_tokens == 0
