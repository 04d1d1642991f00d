"""Paged decode attention: the torch path against dense attention, Triton against torch.

Tiny shapes: 4 query heads over 2 KV heads (GQA), head_dim 8, blocks of 4 slots, block
tables that are out of order, padded with zeros, and context lengths that end mid-block.
The Triton kernel runs on CPU only under TRITON_INTERPRET=1, which must be set before
triton is imported, so it runs in a subprocess.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rollout.kernels.paged_decode import DecodeBatch, Workspace, decode_function, paged_decode_torch

REPO = Path(__file__).resolve().parents[2]


def case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    num_blocks, block_size, kv_heads, head_dim, heads = 12, 4, 2, 8, 4
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    tables = torch.tensor([[3, 7, 1], [5, 0, 0], [11, 2, 9]])
    lens = torch.tensor([10, 3, 12])  # mid-block, inside one block, exactly three blocks
    q = torch.randn(3, heads, head_dim, generator=g)
    return q, k_cache, v_cache, DecodeBatch(tables, lens)


def dense_reference(q, k_cache, v_cache, batch: DecodeBatch, scale: float) -> torch.Tensor:
    """Gather each sequence's keys one position at a time and attend with an explicit softmax."""
    out = torch.empty_like(q)
    block_size, kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // kv_heads
    for seq, (table, length) in enumerate(zip(batch.block_tables.tolist(), batch.context_lens.tolist())):
        slots = [(table[p // block_size], p % block_size) for p in range(length)]
        keys = torch.stack([k_cache[b, s] for b, s in slots])  # [length, kv_heads, head_dim]
        values = torch.stack([v_cache[b, s] for b, s in slots])
        for head in range(q.shape[1]):
            scores = keys[:, head // group] @ q[seq, head] * scale
            out[seq, head] = torch.softmax(scores, dim=0) @ values[:, head // group]
    return out


def test_torch_path_matches_dense_attention():
    q, k_cache, v_cache, batch = case()
    expected = dense_reference(q, k_cache, v_cache, batch, scale=0.3)
    torch.testing.assert_close(paged_decode_torch(q, k_cache, v_cache, batch, 0.3), expected, atol=1e-5, rtol=1e-5)


def test_padding_and_stale_slots_are_ignored():
    q, k_cache, v_cache, batch = case()
    before = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    # Overwrite everything no sequence may see: block 0 (only padding) and the slots of
    # sequence 0's last block past its length (positions 10, 11 -> block 1, slots 2, 3).
    k_cache[0], v_cache[0] = 1e4, -1e4
    k_cache[1, 2:], v_cache[1, 2:] = 1e4, -1e4
    torch.testing.assert_close(paged_decode_torch(q, k_cache, v_cache, batch, 0.3), before)


def test_unknown_kernel_is_rejected():
    with pytest.raises(ValueError, match="unknown decode kernel 'cuda'"):
        decode_function("cuda")


TRITON_SCRIPT = textwrap.dedent(
    """
    import torch
    from tests.rollout.test_paged_decode_kernel import case
    from rollout.kernels.paged_decode import paged_decode_torch
    from rollout.kernels.paged_decode_triton import paged_decode_triton
    for seed in range(3):
        q, k_cache, v_cache, batch = case(seed)
        expected = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
        torch.testing.assert_close(paged_decode_triton(q, k_cache, v_cache, batch, 0.3), expected, atol=1e-5, rtol=1e-5)
    print("ok")
    """
)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install triton)")
def test_triton_kernel_matches_torch_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_workspace_gathers_match_fresh_ones():
    """The torch path gathering into reused buffers, bigger and then smaller than needed."""
    q, k_cache, v_cache, batch = case()
    expected = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    workspace = Workspace()
    small = DecodeBatch(batch.block_tables[1:, :1], torch.tensor([3, 4]), workspace)
    paged_decode_torch(q[1:], k_cache, v_cache, small, 0.3)
    out = paged_decode_torch(q, k_cache, v_cache, DecodeBatch(batch.block_tables, batch.context_lens, workspace), 0.3)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    again = paged_decode_torch(q[1:], k_cache, v_cache, small, 0.3)
    torch.testing.assert_close(again, paged_decode_torch(q[1:], k_cache, v_cache, DecodeBatch(small.block_tables, small.context_lens), 0.3))
