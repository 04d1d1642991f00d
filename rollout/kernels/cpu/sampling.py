"""Sampling in C (sampling.c): what rollout/paged/sampler.py does for rows without top-k
or top-p, in one pass per row instead of five to seven torch ops over the whole batch.

    tokens, logprobs = sample_rows(logits, temperatures, uniforms)

logits float32 [rows, vocab]; temperatures [rows] (0: greedy); uniforms float64 [rows],
each row's u ~ U[0, 1) (ignored for greedy rows). Returns Python lists, as `sample` does.
"""
from __future__ import annotations

import functools

import torch

from rollout.kernels.cpu.build import INT, POINTER, SIZE, check_float32, function, require


@functools.cache
def _kernel():
    return function("treadle_sample_f32", *[POINTER] * 6, SIZE, SIZE, INT)


def sample_rows(logits: torch.Tensor, temperatures: list[float], uniforms: torch.Tensor) -> tuple[list[int], list[float]]:
    check_float32(logits=logits)
    logits = logits.contiguous()
    rows, vocab = logits.shape
    require(len(temperatures) == rows and uniforms.shape == (rows,), f"{rows} rows of logits need {rows} temperatures and uniforms")
    temperature = torch.tensor(temperatures, dtype=torch.float32)
    uniforms = uniforms.to(torch.float64).contiguous()
    tokens, logprobs = torch.empty(rows, dtype=torch.long), torch.empty(rows)
    scratch = torch.empty(rows, vocab)
    _kernel()(
        logits.data_ptr(), temperature.data_ptr(), uniforms.data_ptr(), tokens.data_ptr(), logprobs.data_ptr(),
        scratch.data_ptr(), rows, vocab, torch.get_num_threads(),
    )
    return tokens.tolist(), logprobs.tolist()
