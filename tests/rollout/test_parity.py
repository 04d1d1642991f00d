"""The paged engine against transformers: greedy tokens, logprobs, batched vs unbatched.

Both presets with fixed-seed random weights, float32, with the default attention kernel
(the C one on a CPU) and, for tiny, with torch's matmul and attention paths. Prompts of 5
to 40 tokens cover a partial block, several blocks, and (with a 16-token step budget)
chunked prefill.
"""
from __future__ import annotations

import pytest
import torch

from rollout import EngineConfig, SamplingParams, make_engine
from tests.rollout.helpers import gather, one_by_one, random_prompts

GREEDY = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
PROMPTS = random_prompts([5, 17, 33, 40], seed=1)


@pytest.fixture(
    scope="module",
    params=[("tiny", True, "auto"), ("small", True, "auto"), ("tiny", False, "torch")],
    ids=["tiny", "small", "tiny-torch-paths"],  # auto: the CPU attention kernel where it builds
)
def engines(request, tokenizer):
    preset, packed_linear, decode_kernel = request.param
    model = request.getfixturevalue(preset)
    config = EngineConfig(num_kv_blocks=128, packed_linear=packed_linear, decode_kernel=decode_kernel)
    paged = make_engine("paged", model, tokenizer, config)
    hf = make_engine("hf", model, tokenizer, EngineConfig(backend="hf"))
    yield model, paged, hf
    paged.close()
    hf.close()


def test_greedy_matches_hf_single_and_batched(engines):
    _, paged, hf = engines
    reference = one_by_one(hf, PROMPTS, GREEDY)
    assert [c.token_ids for c in one_by_one(paged, PROMPTS, GREEDY)] == [c.token_ids for c in reference]
    assert [c.token_ids for c in gather(paged, PROMPTS, GREEDY)] == [c.token_ids for c in reference]
    assert [c.token_ids for c in gather(hf, PROMPTS, GREEDY)] == [c.token_ids for c in reference]


def full_forward_logprobs(model, prompt, output) -> torch.Tensor:
    ids = torch.tensor([prompt + output])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(output)[:, None])[:, 0]


def test_sampled_logprobs_match_a_full_forward(engines):
    model, paged, _ = engines
    sampling = SamplingParams(max_tokens=16, temperature=0.8, top_k=50, seed=3, ignore_eos=True)
    for completion in gather(paged, PROMPTS, sampling):
        expected = full_forward_logprobs(model, completion.prompt_ids, completion.token_ids)
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-4, rtol=0)


def test_seeded_sampling_is_the_same_batched_and_alone(engines):
    _, paged, _ = engines
    sampling = SamplingParams(max_tokens=16, temperature=1.0, seed=11, ignore_eos=True)
    alone = [c.token_ids for c in one_by_one(paged, PROMPTS, sampling)]
    assert [c.token_ids for c in gather(paged, PROMPTS, sampling)] == alone
    other_seed = SamplingParams(max_tokens=16, temperature=1.0, seed=12, ignore_eos=True)
    assert [c.token_ids for c in gather(paged, PROMPTS, other_seed)] != alone


def test_chunked_prefill_matches_hf(tiny, tokenizer):
    # A 16-token budget splits the 33- and 40-token prompts over several steps.
    config = EngineConfig(num_kv_blocks=64, max_num_batched_tokens=16, max_num_seqs=4)
    paged = make_engine("paged", tiny, tokenizer, config)
    hf = make_engine("hf", tiny, tokenizer, EngineConfig(backend="hf"))
    assert [c.token_ids for c in gather(paged, PROMPTS, GREEDY)] == [c.token_ids for c in one_by_one(hf, PROMPTS, GREEDY)]
    paged.close()
    hf.close()
