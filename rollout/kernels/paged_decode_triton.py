"""Triton paged-attention decode kernel: the GPU path of `paged_decode_torch`.

One program per (sequence, KV head, context partition). It loads the query heads that
share its KV head (the GQA group) once, then walks the sequence's block table a few KV
blocks (pages) at a time, reading each K and V tile straight from the paged cache once
for the whole group (nothing is gathered), with a running max, normaliser and weighted
sum (online softmax, in exp2 form) in float32. Scores come from tensor-core `tl.dot`
for a group of two or more heads (padded to 16 rows) and from broadcast products for a
group of one; the plan (rollout/kernels/paged_decode_plan.py) picks that, the tile
sizes per head size, and the number of partitions.

Split-K (flash-decoding): with one partition a program writes its normalised output.
With several, partition s of a sequence covers an even share of that sequence's own
blocks and writes its (max, sum, unnormalised accumulator) to float32 scratch, and a
second kernel, one program per (sequence, query head), rescales the partitions to their
common max and combines them. A partition with no blocks (a short sequence) writes a
max of -inf and contributes nothing. Every choice depends on shapes only, never on the
context lengths' values, so a call makes no device-to-host copy (CUDA-graph capturable).

Handles any power-of-two block_size, head_dim that is not a power of two (masked), any
group size, context lengths down to 1, and padded block tables (entries past a
sequence's last block are never read). Selected by EngineConfig.decode_kernel =
"triton" on a GPU. On a CPU Triton runs only under TRITON_INTERPRET=1 (about 1000x
slower), which is how tests/rollout/test_paged_decode_kernel.py compares it with the
torch reference. Two interpreter-only detours, chosen by the INTERPRETED constexpr:
the block loop is a while loop (triton 3.6's interpreter cannot take a tensor as a
range() bound) and dot operands are widened to float32 (the interpreter's bf16 dot
returns garbage). Checked under the interpreter with triton 3.2, 3.6 and 3.9, and
compiled for sm_90 (no register spills) with each. This module imports triton at
import time; import it only when the kernel is chosen.
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from rollout.kernels.paged_decode import DecodeBatch
from rollout.kernels.paged_decode_plan import DecodePlan, next_power_of_2, plan_decode

ASSUMED_NUM_SMS = 132
"""SMs taken for a non-CUDA device (the interpreter): an H100's count."""
LOG2_E = 1.4426950408889634


@triton.jit
def _attend_pages(
    page, end_page, context_len, q, k_ptr, v_ptr, table_row, kv_base, page_of_key, slot_of_key, dim_ok,
    running_max, normaliser, acc, qk_scale, stride_kv_block,
    BLOCK_SIZE: tl.constexpr, USE_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr, INTERPRETED: tl.constexpr,
):
    """One loop step: PAGES blocks from `page` (those at or past end_page masked) folded
    into the online softmax state of the query group."""
    pages = page + page_of_key
    page_ok = pages < end_page
    block = tl.load(table_row + pages, mask=page_ok, other=0)
    visible = page_ok & (pages * BLOCK_SIZE + slot_of_key < context_len)
    offsets = block.to(tl.int64)[:, None] * stride_kv_block + kv_base
    load_ok = visible[:, None] & dim_ok[None, :]
    k = tl.load(k_ptr + offsets, mask=load_ok, other=0.0)
    if not USE_DOT:
        scores = tl.sum(q[:, None, :].to(tl.float32) * k[None, :, :].to(tl.float32), axis=2)
    elif INTERPRETED:  # the interpreter's dot of bf16/fp16 tiles is wrong: widen them
        scores = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision=DOT_PRECISION)
    else:
        scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
    scores = tl.where(visible[None, :], scores * qk_scale, float("-inf"))
    new_max = tl.maximum(running_max, tl.max(scores, axis=1))
    correction = tl.exp2(running_max - new_max)
    weights = tl.exp2(scores - new_max[:, None])
    v = tl.load(v_ptr + offsets, mask=load_ok, other=0.0)
    if not USE_DOT:
        weighted = tl.sum(weights[:, :, None] * v[None, :, :].to(tl.float32), axis=1)
    elif INTERPRETED:
        weighted = tl.dot(weights.to(v.dtype).to(tl.float32), v.to(tl.float32), input_precision=DOT_PRECISION)
    else:
        weighted = tl.dot(weights.to(v.dtype), v, input_precision=DOT_PRECISION)
    acc = acc * correction[:, None] + weighted
    normaliser = normaliser * correction + tl.sum(weights, axis=1)
    return new_max, normaliser, acc


@triton.jit
def _partition_kernel(
    q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, part_max_ptr, part_sum_ptr, part_acc_ptr, qk_scale,
    stride_q_seq, stride_q_head,
    stride_kv_block, stride_kv_slot, stride_kv_head,
    stride_tables_seq,
    stride_out_seq, stride_out_head,
    num_heads, num_splits,
    GROUP: tl.constexpr, GROUP_ROWS: tl.constexpr, BLOCK_SIZE: tl.constexpr, PAGES: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, SPLIT: tl.constexpr,
    USE_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr, INTERPRETED: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    context_len = tl.load(lens_ptr + seq)
    num_pages = tl.cdiv(context_len, BLOCK_SIZE)
    pages_per_split = tl.cdiv(tl.cdiv(num_pages, num_splits), PAGES) * PAGES
    first_page = split * pages_per_split
    end_page = tl.minimum(first_page + pages_per_split, num_pages)

    rows = tl.arange(0, GROUP_ROWS)
    heads = kv_head * GROUP + rows
    row_ok = rows < GROUP
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    q = tl.load(
        q_ptr + seq * stride_q_seq + heads[:, None] * stride_q_head + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :], other=0.0,
    )
    keys = tl.arange(0, PAGES * BLOCK_SIZE)
    page_of_key = keys // BLOCK_SIZE
    slot_of_key = keys % BLOCK_SIZE
    table_row = tables_ptr + seq * stride_tables_seq
    kv_base = kv_head * stride_kv_head + slot_of_key[:, None] * stride_kv_slot + dims[None, :]

    running_max = tl.full([GROUP_ROWS], float("-inf"), tl.float32)
    normaliser = tl.zeros([GROUP_ROWS], dtype=tl.float32)
    acc = tl.zeros([GROUP_ROWS, BLOCK_D], dtype=tl.float32)
    if INTERPRETED:
        # triton 3.6's interpreter cannot take a tensor as a range() bound (its scalars are
        # 1-element arrays, which numpy 2.4 will not convert with int()).
        page = first_page
        while page < end_page:
            running_max, normaliser, acc = _attend_pages(
                page, end_page, context_len, q, k_ptr, v_ptr, table_row, kv_base, page_of_key, slot_of_key, dim_ok,
                running_max, normaliser, acc, qk_scale, stride_kv_block, BLOCK_SIZE, USE_DOT, DOT_PRECISION, INTERPRETED,
            )
            page += PAGES
    else:  # a for loop, which Triton software-pipelines (a while loop it does not)
        for page in range(first_page, end_page, PAGES):
            running_max, normaliser, acc = _attend_pages(
                page, end_page, context_len, q, k_ptr, v_ptr, table_row, kv_base, page_of_key, slot_of_key, dim_ok,
                running_max, normaliser, acc, qk_scale, stride_kv_block, BLOCK_SIZE, USE_DOT, DOT_PRECISION, INTERPRETED,
            )

    if not SPLIT:
        out = acc / normaliser[:, None]
        out_offsets = seq * stride_out_seq + heads[:, None] * stride_out_head + dims[None, :]
        tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])
    else:
        # Scratch [num_seqs, num_heads, num_splits] (+ [HEAD_DIM]), contiguous.
        part = (seq * num_heads + heads) * num_splits + split
        tl.store(part_max_ptr + part, running_max, mask=row_ok)
        tl.store(part_sum_ptr + part, normaliser, mask=row_ok)
        tl.store(part_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :], acc, mask=row_ok[:, None] & dim_ok[None, :])


@triton.jit
def _reduce_kernel(
    part_max_ptr, part_sum_ptr, part_acc_ptr, out_ptr,
    stride_out_seq, stride_out_head,
    num_heads, num_splits,
    SPLITS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    split_ok = splits < num_splits
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    part = (seq * num_heads + head) * num_splits + splits
    maxes = tl.load(part_max_ptr + part, mask=split_ok, other=float("-inf"))
    sums = tl.load(part_sum_ptr + part, mask=split_ok, other=0.0)
    accs = tl.load(part_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :], mask=split_ok[:, None] & dim_ok[None, :], other=0.0)
    # Partition 0 always holds the first block (context_len >= 1), so the max is finite
    # and an empty partition's -inf max gives it weight exp2(-inf) = 0.
    weights = tl.exp2(maxes - tl.max(maxes, axis=0))
    out = tl.sum(weights[:, None] * accs, axis=0) / tl.sum(weights * sums, axis=0)
    tl.store(out_ptr + seq * stride_out_seq + head * stride_out_head + dims, out.to(out_ptr.dtype.element_ty), mask=dim_ok)


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return ASSUMED_NUM_SMS


_plan = functools.lru_cache(maxsize=1024)(plan_decode)
"""plan_decode, remembered: every layer of every step asks again for the same shapes."""


def plan_for(q: torch.Tensor, k_cache: torch.Tensor, batch: DecodeBatch, num_splits: int | None = None) -> DecodePlan:
    """The launch plan `paged_decode_triton` uses for these inputs."""
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    return _plan(num_seqs, num_heads, kv_heads, head_dim, block_size, batch.block_tables.shape[1], _num_sms(q.device), num_splits)



def paged_decode_triton(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: DecodeBatch, scale: float,
    *, num_splits: int | None = None,
) -> torch.Tensor:
    """Same contract as `paged_decode_torch` (see rollout/kernels/paged_decode.py);
    `num_splits` forces the number of context partitions (default: the plan's choice)."""
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(-1) == 1 and q.stride(-1) == 1
    out = torch.empty_like(q)
    if num_seqs == 0:
        return out
    plan = plan_for(q, k_cache, batch, num_splits)
    tables = batch.block_tables if batch.block_tables.stride(-1) == 1 else batch.block_tables.contiguous()
    group = num_heads // kv_heads
    splits = plan.num_splits
    interpreted = q.device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    if splits == 1:
        part_max = part_sum = part_acc = out  # unused
    else:
        part_max = torch.empty((num_seqs, num_heads, splits), dtype=torch.float32, device=q.device)
        part_sum = torch.empty_like(part_max)
        part_acc = torch.empty((num_seqs, num_heads, splits, head_dim), dtype=torch.float32, device=q.device)
    _partition_kernel[(num_seqs, kv_heads, splits)](
        q, k_cache, v_cache, tables, batch.context_lens, out, part_max, part_sum, part_acc, scale * LOG2_E,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        tables.stride(0),
        out.stride(0), out.stride(1),
        num_heads, splits,
        GROUP=group, GROUP_ROWS=plan.group_rows, BLOCK_SIZE=block_size, PAGES=plan.pages_per_step,
        HEAD_DIM=head_dim, BLOCK_D=plan.block_d, SPLIT=splits > 1,
        USE_DOT=plan.use_dot, DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        INTERPRETED=interpreted,
        num_warps=plan.num_warps, num_stages=plan.num_stages,
    )
    if splits > 1:
        _reduce_kernel[(num_seqs, num_heads)](
            part_max, part_sum, part_acc, out, out.stride(0), out.stride(1), num_heads, splits,
            SPLITS_PAD=next_power_of_2(splits), HEAD_DIM=head_dim,
            BLOCK_D=next_power_of_2(head_dim), num_warps=4 if head_dim >= 128 else 2,
        )
    return out
