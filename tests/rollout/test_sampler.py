"""Sampling without a model: filters worked out by hand, seeds, greedy, reported logprobs.

The sampling tests run on both paths of `sample`: torch ops, and the C kernel
(cpu_kernel=True; rollout/kernels/cpu/sampling.c) where it can be built. The C path takes
rows without top-k/top-p and must draw the same tokens from the same generators.
"""
from __future__ import annotations

import math

import pytest
import torch

from rollout.engine import SamplingParams
from rollout.kernels.cpu.build import available
from rollout.paged.sampler import SamplingRow, filter_top_k_top_p, sample

PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(available() is not None, reason="no C kernels here"))]
both_paths = pytest.mark.parametrize("cpu_kernel", PATHS, ids=["torch", "c"])

# Vocabulary order deliberately not sorted by probability: p = [.15, .50, .05, .30].
PROBS = torch.tensor([0.15, 0.50, 0.05, 0.30])
LOGITS = PROBS.log()


def kept(top_k: int, top_p: float) -> list[int]:
    filtered = filter_top_k_top_p(LOGITS[None], torch.tensor([top_k]), torch.tensor([top_p]))[0]
    return [i for i in range(4) if filtered[i] > float("-inf")]


def test_top_k_keeps_the_k_most_likely():
    assert kept(top_k=1, top_p=1.0) == [1]
    assert kept(top_k=2, top_p=1.0) == [1, 3]
    assert kept(top_k=0, top_p=1.0) == [0, 1, 2, 3]  # 0 disables


def test_top_p_keeps_the_smallest_set_reaching_p():
    # Sorted: .50 (token 1), .30 (token 3), .15 (token 0), .05 (token 2).
    # Mass before each: 0, .50, .80, .95; a token stays while the mass before it < top_p.
    assert kept(top_k=0, top_p=0.4) == [1]  # .50 alone reaches .4
    assert kept(top_k=0, top_p=0.7) == [1, 3]  # .50 + .30 = .80 >= .7
    assert kept(top_k=0, top_p=0.9) == [0, 1, 3]


def test_top_p_applies_to_the_top_k_survivors():
    # top-k 3 renormalises .50/.30/.15 over .95: .526, .316, .158; mass before: 0, .526, .842.
    assert kept(top_k=3, top_p=0.8) == [1, 3]
    assert kept(top_k=3, top_p=0.85) == [0, 1, 3]


def test_filters_are_per_row():
    logits = LOGITS.repeat(2, 1)
    filtered = filter_top_k_top_p(logits, torch.tensor([1, 0]), torch.tensor([1.0, 0.7]))
    assert (filtered > float("-inf")).tolist() == [[False, True, False, False], [False, True, False, True]]


def rows(n: int, **params) -> list[SamplingRow]:
    return [SamplingRow(SamplingParams(**params), None) for _ in range(n)]


@both_paths
def test_greedy_is_argmax_and_the_logprob_is_the_policys(cpu_kernel):
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0]])  # a tie: the first index wins, as in transformers
    tokens, logprobs = sample(logits, rows(1, temperature=0), torch.Generator(), cpu_kernel)
    expected = 3.0 - math.log(math.e + 2 * math.e**3 + 1)  # log softmax at index 1
    assert tokens == [1] and math.isclose(logprobs[0], expected, rel_tol=1e-6)


@both_paths
def test_logprob_ignores_temperature_and_filters(cpu_kernel):
    tokens, logprobs = sample(LOGITS[None], rows(1, temperature=0.5, top_k=1), torch.Generator().manual_seed(0), cpu_kernel)
    assert tokens == [1] and math.isclose(logprobs[0], math.log(0.5), rel_tol=1e-6)


@both_paths
def test_sampled_frequencies_follow_the_distribution(cpu_kernel):
    n = 4000
    tokens, _ = sample(LOGITS.repeat(n, 1), rows(n, temperature=1.0), torch.Generator().manual_seed(0), cpu_kernel)
    counts = torch.bincount(torch.tensor(tokens), minlength=4) / n
    # Standard error of a frequency near .5 with n = 4000 is .008; allow four of them.
    assert torch.allclose(counts, PROBS, atol=0.032), counts


@both_paths
def test_filtered_tokens_are_never_drawn(cpu_kernel):
    n = 500
    tokens, _ = sample(LOGITS.repeat(n, 1), rows(n, temperature=1.0, top_p=0.7), torch.Generator().manual_seed(1), cpu_kernel)
    assert set(tokens) == {1, 3}


@both_paths
def test_a_seeded_row_does_not_depend_on_its_batch(cpu_kernel):
    def draws(batch_size: int, position: int) -> list[int]:
        seeded = SamplingRow(SamplingParams(temperature=1.0, seed=7), torch.Generator().manual_seed(7))
        batch = rows(batch_size - 1, temperature=1.0)
        batch.insert(position, seeded)
        engine = torch.Generator().manual_seed(batch_size)
        return [sample(torch.zeros(batch_size, 50), batch, engine, cpu_kernel)[0][position] for _ in range(20)]

    alone = draws(1, 0)
    assert draws(5, 3) == alone and draws(9, 0) == alone
    assert len(set(alone)) > 5  # and the draws are not degenerate


@pytest.mark.skipif(available() is not None, reason="no C kernels here")
def test_the_c_path_draws_what_the_torch_path_draws():
    """Greedy, seeded and unseeded rows at two temperatures, 64 rows of 1,100 logits (the
    kernel's threaded size): the same generators give the same tokens and logprobs."""
    logits = torch.randn(64, 1100, generator=torch.Generator().manual_seed(3)) * 3

    def batch() -> list[SamplingRow]:
        out = []
        for i in range(64):
            params = SamplingParams(temperature=(0.0, 1.0, 0.7)[i % 3], seed=i if i % 4 == 0 else None)
            out.append(SamplingRow(params, torch.Generator().manual_seed(i) if params.seed is not None else None))
        return out

    torch_tokens, torch_logprobs = sample(logits, batch(), torch.Generator().manual_seed(9))
    c_tokens, c_logprobs = sample(logits, batch(), torch.Generator().manual_seed(9), cpu_kernel=True)
    assert c_tokens == torch_tokens
    torch.testing.assert_close(torch.tensor(c_logprobs), torch.tensor(torch_logprobs), atol=1e-5, rtol=1e-5)
