"""The compiled decode step (EngineConfig.compile_decode) against the eager engine and hf.

The inline attention is checked eagerly against the torch path on the kernel tests' tiny
shapes. The compiled engine (the tiny preset, with the default kernel, the C one on a
CPU; one compilation for the module, a few seconds with inductor's on-disk cache warm,
and one more for the torch kernel's inline attention) must give hf's greedy tokens alone and
batched, logprobs of a full forward, the eager engine's tokens after a weight update,
and never compile again for a new batch size or context length. Without a C++ compiler,
or when a compilation fails later, the engine warns and decodes eagerly.
"""
from __future__ import annotations

import asyncio

import pytest
import torch
from torch._dynamo.utils import counters

from rollout import EngineConfig, SamplingParams, make_engine
from rollout.kernels.paged_decode import paged_decode_torch
from rollout.kernels.paged_decode_inline import paged_decode_inline
from rollout.paged.decode_graph import compiler_problem
from tests.rollout.helpers import gather, one_by_one, random_prompts
from tests.rollout.test_paged_decode_kernel import case
from tests.rollout.test_parity import full_forward_logprobs

# torch's own compile machinery calls the deprecated torch.jit.script_method.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

GREEDY = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
PROMPTS = random_prompts([5, 17, 33, 40], seed=1)


def test_inline_decode_matches_the_torch_path():
    q, k_cache, v_cache, batch = case()
    expected = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    last = batch.context_lens - 1
    blocks = batch.block_tables.gather(1, (last // 4)[:, None])[:, 0]
    k_last, v_last = k_cache[blocks, last % 4], v_cache[blocks, last % 4]
    everyone, no_one = torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)
    tables = batch.block_tables

    def inline(k_new, v_new, num_cached, new_visible):
        return paged_decode_inline(q, k_new, v_new, k_cache, v_cache, tables, num_cached, new_visible, 0.3)

    # The last key as this step's new key, the others from the cache ...
    torch.testing.assert_close(inline(k_last, v_last, last, everyone), expected, atol=1e-5, rtol=1e-5)
    # ... or all of them from the cache, the new key (nonsense here) hidden.
    torch.testing.assert_close(inline(k_last + 1e3, v_last - 1e3, batch.context_lens, no_one), expected, atol=1e-5, rtol=1e-5)
    # A row with nothing cached sees only its new key: softmax over one key is its value.
    alone = inline(k_last, v_last, torch.zeros(3, dtype=torch.long), everyone)
    torch.testing.assert_close(alone, v_last.repeat_interleave(2, dim=1))


def engine_with(model, tokenizer, compile_decode: bool, num_kv_blocks: int = 128):
    return make_engine("paged", model, tokenizer, EngineConfig(num_kv_blocks=num_kv_blocks, compile_decode=compile_decode))


@pytest.fixture(scope="module")
def engines(tiny, tokenizer):
    if compiler_problem(torch.device("cpu")):
        pytest.skip(f"torch.compile cannot run here: {compiler_problem(torch.device('cpu'))}")
    compiled, eager = engine_with(tiny, tokenizer, True), engine_with(tiny, tokenizer, False)
    assert compiled.core.runner.decode_graph is not None and eager.core.runner.decode_graph is None
    yield compiled, eager
    compiled.close()
    eager.close()


def test_compiled_greedy_matches_hf_alone_and_batched_without_recompiling(engines, tiny, tokenizer):
    compiled, _ = engines
    hf = make_engine("hf", tiny, tokenizer, EngineConfig(backend="hf"))
    reference = [c.token_ids for c in one_by_one(hf, PROMPTS, GREEDY)]
    hf.close()
    graphs = counters["stats"]["unique_graphs"]
    # One by one: batches of one row (padded), tables of 1 to 4 blocks; then 4 rows at once.
    assert [c.token_ids for c in one_by_one(compiled, PROMPTS, GREEDY)] == reference
    assert [c.token_ids for c in gather(compiled, PROMPTS, GREEDY)] == reference
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_fully_cached_prompt_reads_its_last_key_from_the_cache(engines):
    compiled, eager = engines
    prompt = random_prompts([32], seed=5)[0]  # two full blocks: the second run finds all of it cached
    expected = gather(eager, [prompt], GREEDY)[0].token_ids
    first, again = gather(compiled, [prompt], GREEDY)[0], gather(compiled, [prompt], GREEDY)[0]
    assert again.num_cached_prompt_tokens == 32  # its first step re-runs only the last query, unwritten
    assert first.token_ids == again.token_ids == expected


def test_with_the_torch_kernel_the_compiled_step_attends_inline(engines, tiny, tokenizer):
    """decode_kernel=torch (any device or dtype) compiles `paged_decode_inline`, not the C op."""
    config = EngineConfig(num_kv_blocks=128, compile_decode=True, decode_kernel="torch")
    engine = make_engine("paged", tiny, tokenizer, config)
    assert engine.core.runner.decode_graph._attention is paged_decode_inline
    assert [c.token_ids for c in gather(engine, PROMPTS, GREEDY)] == [c.token_ids for c in gather(engines[1], PROMPTS, GREEDY)]
    engine.close()


def test_compiled_logprobs_match_a_full_forward(engines, tiny):
    compiled, _ = engines
    sampling = SamplingParams(max_tokens=16, temperature=0.8, top_k=50, seed=3, ignore_eos=True)
    for completion in gather(compiled, PROMPTS, sampling):
        expected = full_forward_logprobs(tiny, completion.prompt_ids, completion.token_ids)
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-4, rtol=0)


def test_a_weight_update_reaches_the_compiled_step(engines, tiny):
    compiled, eager = engines
    embed = tiny.state_dict()["model.embed_tokens.weight"].numpy()
    before = [c.token_ids for c in gather(compiled, PROMPTS, GREEDY)]

    def update(weights, version):
        for engine in engines:
            asyncio.run(engine.update_weights({"model.embed_tokens.weight": weights}, version=version))

    update(embed[::-1].copy(), 1)  # another policy (the head is tied: both ends change)
    try:
        after = [c.token_ids for c in gather(compiled, PROMPTS, GREEDY)]
        assert after == [c.token_ids for c in gather(eager, PROMPTS, GREEDY)]
        assert after != before
    finally:
        update(embed, 2)  # the module's engines are shared
    assert [c.token_ids for c in gather(compiled, PROMPTS, GREEDY)] == before


def test_without_a_compiler_the_engine_warns_and_decodes_eagerly(tiny, tokenizer):
    no_compiler = torch._inductor.config.patch({"cpp.cxx": ("no-such-c++-compiler",)})
    with no_compiler, pytest.warns(RuntimeWarning, match="engine.compile_decode: no C\\+\\+ compiler for inductor"):
        engine = engine_with(tiny, tokenizer, True, num_kv_blocks=64)
    assert engine.core.runner.decode_graph is None
    assert len(gather(engine, PROMPTS[:1], GREEDY)[0].token_ids) == GREEDY.max_tokens
    engine.close()


def test_a_failed_recompilation_falls_back_to_eager_decoding(engines, tiny, tokenizer, monkeypatch):
    from torch._inductor.exc import InvalidCxxCompiler

    engine = engine_with(tiny, tokenizer, True, num_kv_blocks=64)  # the module's compilation, reused
    graph = engine.core.runner.decode_graph

    def fail(*args):
        raise InvalidCxxCompiler()

    monkeypatch.setattr(graph, "_forward", fail)
    with pytest.warns(RuntimeWarning, match="torch.compile failed: InvalidCxxCompiler"):
        tokens = gather(engine, PROMPTS[:2], GREEDY)
    assert engine.core.runner.decode_graph is None
    assert [c.token_ids for c in tokens] == [c.token_ids for c in gather(engines[1], PROMPTS[:2], GREEDY)]
    engine.close()
