"""Decode steps on static, padded buffers (EngineConfig.cuda_graphs) against the eager path.

On a CPU the static-buffer path runs the forward on the buffers without capture, so the
padding and the buffer bookkeeping are checked here: greedy tokens and logprobs equal
the eager engine's across ragged batches that shrink through the bucket boundaries
(8 -> 4 -> 2 -> 1 rows), tables of several widths, a weight update in the middle of the
run, and a fully cached prompt whose re-run query must not write its cached block. A
weight update must write into the tensors the graphs captured (no tensor moves). With
a GPU, the same run replays captured graphs at apr-228m's shapes in float32 (bf16 would
make near-tied logits flip between differently shaped matmuls).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rollout import EngineConfig, SamplingParams
from rollout.checkpoint import eos_token_ids, read_state_dict
from rollout.paged.block_manager import BlockManager
from rollout.paged.core import PagedCore
from rollout.paged.cuda_graph import row_buckets, width_buckets
from rollout.paged.model_runner import ModelRunner
from rollout.paged.scheduler import Scheduler
from rollout.requests import Request
from tests.rollout.helpers import random_prompts

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (graph capture is CUDA-only)")

PROMPT_LENGTHS = [5, 17, 33, 40, 9, 3, 12]
MAX_TOKENS = [3, 6, 12, 8, 10, 5, 4]  # 7 rows decode, one fewer every step or two: every bucket of 8


def test_buckets():
    assert row_buckets(1) == [1]
    assert row_buckets(8) == [1, 2, 4, 8]
    assert row_buckets(20) == [1, 2, 4, 8, 16, 20]
    assert row_buckets(100) == [1, 2, 4, 8, 16, 32, 64, 96, 100]
    assert row_buckets(256) == [1, 2, 4, 8, 16] + list(range(32, 257, 32))
    assert width_buckets(10, "triton") == width_buckets(10, "cpu") == [10]
    assert width_buckets(10, "torch") == [1, 2, 4, 8, 10]
    assert width_buckets(8, "torch") == [1, 2, 4, 8]
    assert width_buckets(1, "torch") == [1]


def make_core(model, *, static: bool, decode_kernel: str = "auto", device: str = "cpu", max_num_seqs: int = 8,
              num_blocks: int = 128, block_size: int = 4, max_model_len: int = 128) -> PagedCore:
    """A paged core whose runner decodes on the static buffers (`static`: captured on a GPU)."""
    runner = ModelRunner(
        model.config, read_state_dict(model), num_blocks=num_blocks, block_size=block_size, max_model_len=max_model_len,
        dtype=torch.float32, device=device, decode_kernel=decode_kernel, packed_linear=True,
        cuda_graphs=static, max_num_seqs=max_num_seqs,
    )
    scheduler = Scheduler(BlockManager(num_blocks, block_size), max_num_seqs=max_num_seqs, max_num_batched_tokens=512)
    return PagedCore(runner, scheduler, max_model_len=max_model_len, eos_token_ids=eos_token_ids(model.config, model))


def perturbed(model, seed: int) -> dict[str, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: (t.float() + 0.02 * torch.randn(t.shape, generator=generator)).numpy()
        for name, t in read_state_dict(model).items()
    }


def drive(core: PagedCore, prompts, max_tokens, update=None, update_after: int = 2) -> tuple[dict, int]:
    """Greedy completions by request id, and the number of steps without prefill; the
    `update` weights are loaded after `update_after` steps."""
    for i, (prompt, n) in enumerate(zip(prompts, max_tokens)):
        core.add_request(Request(f"r{i}", prompt, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)))
    completions, steps, decode_steps = {}, 0, 0
    while core.has_unfinished():
        prefilled = core.stats().prefill_tokens_computed
        completions.update((c.request_id, c) for c in core.step())
        decode_steps += core.stats().prefill_tokens_computed == prefilled
        steps += 1
        if update is not None and steps == update_after:
            core.load_weights(update, version=1)
    return completions, decode_steps


def assert_same(static: dict, eager: dict) -> None:
    assert sorted(static) == sorted(eager)
    for request_id, expected in eager.items():
        got = static[request_id]
        assert got.token_ids == expected.token_ids, request_id
        assert got.versions == expected.versions, request_id
        torch.testing.assert_close(torch.tensor(got.logprobs), torch.tensor(expected.logprobs), atol=1e-4, rtol=0)


@pytest.mark.parametrize("decode_kernel", ["auto", "torch"])  # auto: the C kernel where it builds
def test_static_buffers_match_eager_across_buckets_and_a_weight_update(tiny, decode_kernel):
    prompts = random_prompts(PROMPT_LENGTHS, seed=3)
    update = perturbed(tiny, seed=5)
    static = make_core(tiny, static=True, decode_kernel=decode_kernel)
    eager = make_core(tiny, static=False, decode_kernel=decode_kernel)
    assert eager.runner.cuda_graphs is None and static.runner.cuda_graphs.num_graphs == 0  # a CPU captures nothing
    static_out, decode_steps = drive(static, prompts, MAX_TOKENS, update)
    eager_out, _ = drive(eager, prompts, MAX_TOKENS, update)
    assert_same(static_out, eager_out)
    assert [c.versions[-1] for c in static_out.values()] == [1] * len(prompts)  # the update reached every request
    # Every step after the first (one prefill step for all seven prompts) ran on the buffers.
    assert static.runner.cuda_graphs.num_steps == decode_steps == max(MAX_TOKENS) - 1


def test_a_fully_cached_prompt_reruns_its_last_query_without_writing_its_block(tiny):
    prompt = random_prompts([8], seed=4)[0]  # two full blocks of 4
    static, eager = make_core(tiny, static=True), make_core(tiny, static=False)
    for core in (static, eager):
        drive(core, [prompt], [2])
    blocks = static.scheduler.blocks.match_prefix(_hashes(prompt))
    assert len(blocks) == 2
    cached = [(k[blocks].clone(), v[blocks].clone()) for k, v in static.runner.kv_caches]
    steps_before = static.runner.cuda_graphs.num_steps
    static_out, _ = drive(static, [prompt], [3])
    eager_out, _ = drive(eager, [prompt], [3])
    assert_same(static_out, eager_out)
    assert static_out["r0"].num_cached_prompt_tokens == 8
    # The re-run query (a one-token step) and two decode steps ran on the buffers ...
    assert static.runner.cuda_graphs.num_steps - steps_before == 3
    # ... and the cached blocks hold what they held.
    for (k, v), (k_before, v_before) in zip(static.runner.kv_caches, cached):
        assert torch.equal(k[blocks], k_before) and torch.equal(v[blocks], v_before)


def _hashes(prompt: list[int]) -> list[bytes]:
    from rollout.paged.sequence import Sequence

    return Sequence("probe", prompt, SamplingParams(), block_size=4).full_block_hashes()


def test_weight_updates_write_into_the_captured_tensors(tiny):
    runner = make_core(tiny, static=True).runner
    tensors = list(runner.hf_views.values()) + [
        t for linears in runner.model.linears for linear in linears for t in (linear.weight, linear.bias) if t is not None
    ] + [runner.model.lm_head.weight, runner.model.rope.cos, runner.model.rope.signed_sin]
    addresses = [t.data_ptr() for t in tensors]
    embed_before = runner.weights.embed.clone()
    runner.load_weights(perturbed(tiny, seed=6))
    assert [t.data_ptr() for t in tensors] == addresses
    assert not torch.equal(runner.weights.embed, embed_before)


def test_the_engine_config_switch_acts_only_on_a_gpu(tiny):
    """On a CPU `cuda_graphs` (on by default) changes nothing: no buffers, no extra block."""
    core = PagedCore.from_model(tiny, EngineConfig(num_kv_blocks=16))
    assert EngineConfig().cuda_graphs is True
    assert core.runner.cuda_graphs is None and core.runner.kv_caches[0][0].shape[0] == 16


@pytest.fixture(scope="module")
def apr_228m(tokenizer):
    from learner.models import init_model
    from learner.presets import ModelConfig

    return init_model(ModelConfig(preset="apr-228m", init_seed=0), tokenizer).eval()


@needs_cuda
@pytest.mark.parametrize("decode_kernel", ["triton", "torch"])
def test_captured_graphs_match_eager_on_a_gpu(apr_228m, decode_kernel):
    model = apr_228m
    lengths = [int(n) for n in torch.randint(4, 60, (40,), generator=torch.Generator().manual_seed(0))]
    max_tokens = [1 + i % 37 for i in range(40)]  # 40 rows shrinking to 1: every bucket of 40
    prompts = random_prompts(lengths, seed=7)
    update = perturbed(model, seed=8)
    options = dict(decode_kernel=decode_kernel, device="cuda", max_num_seqs=40, num_blocks=512, block_size=16)
    static, eager = make_core(model, static=True, **options), make_core(model, static=False, **options)
    graphs = static.runner.cuda_graphs
    assert graphs.num_graphs == len(graphs.rows) * len(graphs.widths) > 1
    static_out, decode_steps = drive(static, prompts, max_tokens, update, update_after=10)
    eager_out, _ = drive(eager, prompts, max_tokens, update, update_after=10)
    assert_same(static_out, eager_out)
    assert graphs.num_steps == decode_steps > 0
    graphs.replay_last()  # what benchmarks/engine_gpu.py times
    torch.cuda.synchronize()
