"""Triton paged-attention decode kernel: the GPU path of `paged_decode_torch`.

One program per (sequence, query head). It walks the sequence's block table one KV
block at a time, so K and V are read straight from the paged cache (nothing is
gathered), keeping a running max, normaliser and weighted sum (online softmax) in
float32. Grouped-query attention maps query head h to KV head h // group.

Selected by EngineConfig.decode_kernel = "triton" on a GPU. On a CPU Triton runs only
under TRITON_INTERPRET=1 (about 1000x slower), which is how
tests/rollout/test_paged_decode_kernel.py compares it with the torch reference.
This module imports triton at import time; import it only when the kernel is chosen.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rollout.kernels.paged_decode import DecodeBatch


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, scale,
    stride_q_seq, stride_q_head,
    stride_kv_block, stride_kv_slot, stride_kv_head,
    stride_tables_seq,
    stride_out_seq, stride_out_head,
    GROUP: tl.constexpr, BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    kv_head = head // GROUP
    context_len = tl.load(lens_ptr + seq)
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    slots = tl.arange(0, BLOCK_SIZE)
    q = tl.load(q_ptr + seq * stride_q_seq + head * stride_q_head + dims, mask=dim_ok, other=0.0).to(tl.float32)
    running_max = tl.full([], float("-inf"), tl.float32)
    normaliser = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for i in range(0, tl.cdiv(context_len, BLOCK_SIZE)):
        block = tl.load(tables_ptr + seq * stride_tables_seq + i)
        visible = i * BLOCK_SIZE + slots < context_len
        offsets = block * stride_kv_block + slots[:, None] * stride_kv_slot + kv_head * stride_kv_head + dims[None, :]
        load_ok = visible[:, None] & dim_ok[None, :]
        k = tl.load(k_ptr + offsets, mask=load_ok, other=0.0).to(tl.float32)
        scores = tl.sum(k * q[None, :], axis=1) * scale
        scores = tl.where(visible, scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=0))
        correction = tl.exp(running_max - new_max)
        weights = tl.exp(scores - new_max)
        v = tl.load(v_ptr + offsets, mask=load_ok, other=0.0).to(tl.float32)
        acc = acc * correction + tl.sum(weights[:, None] * v, axis=0)
        normaliser = normaliser * correction + tl.sum(weights, axis=0)
        running_max = new_max
    out = acc / normaliser
    tl.store(out_ptr + seq * stride_out_seq + head * stride_out_head + dims, out.to(out_ptr.dtype.element_ty), mask=dim_ok)


def paged_decode_triton(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: DecodeBatch, scale: float
) -> torch.Tensor:
    """Same contract as `paged_decode_torch` (see rollout/kernels/paged_decode.py)."""
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(-1) == 1 and q.stride(-1) == 1
    assert block_size & (block_size - 1) == 0, "block_size must be a power of two"
    tables = batch.block_tables.contiguous()
    out = torch.empty_like(q)
    _paged_decode_kernel[(num_seqs, num_heads)](
        q, k_cache, v_cache, tables, batch.context_lens, out, scale,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        tables.stride(0),
        out.stride(0), out.stride(1),
        GROUP=num_heads // kv_heads, BLOCK_SIZE=block_size, HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim),
    )
    return out
