"""Helpers of the rollout tests: random prompts, running requests through an engine."""
from __future__ import annotations

import asyncio

import torch


def random_prompts(lengths, seed=0, vocab_size=1111):
    """Random token ids (no special tokens), one prompt per length."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (n,), generator=generator).tolist() for n in lengths]


def gather(engine, prompts, sampling, ids=None):
    """Run the prompts concurrently through an engine; the completions in order."""

    async def main():
        names = ids or [None] * len(prompts)
        return await asyncio.gather(*(engine.generate(p, sampling, request_id=r) for p, r in zip(prompts, names)))

    return asyncio.run(main())


def one_by_one(engine, prompts, sampling):
    return [gather(engine, [p], sampling)[0] for p in prompts]
