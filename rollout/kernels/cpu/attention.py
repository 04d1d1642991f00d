"""Paged decode attention in C (attention.c): the CPU path of EngineConfig.decode_kernel=cpu.

    out = paged_decode_cpu(q, k_cache, v_cache, DecodeBatch(block_tables, context_lens), scale)
    out = torch.ops.treadle.paged_decode_cpu(q, k_new, v_new, k_cache, v_cache,
                                             block_tables, num_cached, new_visible, scale)

The first form is `paged_decode_torch`'s (rollout/kernels/paged_decode.py), for steps
whose new K/V are already in the cache. The second is `paged_decode_inline`'s
(rollout/kernels/paged_decode_inline.py), for the compiled decode step, whose new K/V
are arguments; it is a torch custom op, so torch.compile calls it as one opaque kernel.

Why a kernel of its own: on CPU a decode step of a small model spent 40% of its time in
attention, both as gather + SDPA (which copies every sequence's history out of the
paged cache in every layer) and as inductor's fusion of `paged_decode_inline` (which
computes a block index per element and does not vectorise its reductions). This kernel
reads each cached key and value once, in place, for every query head of its KV head,
vectorises over head_dim, and splits (sequence, KV head) items over torch's OpenMP
threads: on the tiny preset's shapes (batch 64, about 100 keys) 55-85 us a call with the
cache warm, against 460 us for gather + SDPA and 830 us for the compiled inline form.

Float32 CPU tensors only (the engine chooses the torch path for anything else).
"""
from __future__ import annotations

import functools

import torch

from rollout.kernels.cpu.build import FLOAT, INT, POINTER, SIZE, check_float32, function, require
from rollout.kernels.paged_decode import DecodeBatch


@functools.cache
def _kernel():
    return function("treadle_paged_decode_f32", *[POINTER] * 9, *[SIZE] * 6, FLOAT, INT, restype=INT)


def attend(q, k_new, v_new, k_cache, v_cache, block_tables, num_cached, new_visible, scale: float) -> torch.Tensor:
    """Both forms' work; k_new, v_new, new_visible None: every key is in the cache.
    Checks every argument the kernel would read out of bounds with (the engine's own
    decode step calls `attend_unchecked`)."""
    check_float32(q=q, k_cache=k_cache, v_cache=v_cache)
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, kv_heads, cache_head_dim = k_cache.shape
    require(v_cache.shape == k_cache.shape, f"v_cache {tuple(v_cache.shape)} differs from k_cache {tuple(k_cache.shape)}")
    require(head_dim == cache_head_dim and num_heads % kv_heads == 0,
             f"q's {num_heads} heads of {head_dim} do not fit the cache's {kv_heads} KV heads of {cache_head_dim}")
    require(block_tables.dtype == num_cached.dtype == torch.long, "block_tables and num_cached must be int64")
    require(block_tables.shape[0] == num_cached.shape[0] == num_seqs, "block_tables, num_cached and q differ in rows")
    if num_seqs:
        require(int(num_cached.max()) <= block_tables.shape[1] * block_size and int(num_cached.min()) >= 0,
                 "a row's num_cached is negative or beyond its block table")
        require(int(block_tables.min()) >= 0 and int(block_tables.max()) < k_cache.shape[0], "a block id is outside the cache")
    q, k_cache, v_cache = q.contiguous(), k_cache.contiguous(), v_cache.contiguous()
    block_tables, num_cached = block_tables.contiguous(), num_cached.contiguous()
    if k_new is not None:
        check_float32(k_new=k_new, v_new=v_new)
        require(new_visible is not None and new_visible.dtype == torch.bool, "new_visible must be a bool tensor with k_new")
        require(k_new.shape == v_new.shape == (num_seqs, kv_heads, head_dim), "k_new and v_new must be [rows, kv_heads, head_dim]")
        k_new, v_new, new_visible = k_new.contiguous(), v_new.contiguous(), new_visible.contiguous()
    return attend_unchecked(q, k_new, v_new, k_cache, v_cache, block_tables, num_cached, new_visible, scale)



def attend_unchecked(q, k_new, v_new, k_cache, v_cache, block_tables, num_cached, new_visible, scale: float) -> torch.Tensor:
    """`attend` for contiguous float32 tensors (the engine's decode step)."""
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    out = torch.empty_like(q)
    status = _kernel()(
        q.data_ptr(), _pointer(k_new), _pointer(v_new), k_cache.data_ptr(), v_cache.data_ptr(),
        block_tables.data_ptr(), num_cached.data_ptr(), _pointer(new_visible), out.data_ptr(),
        num_seqs, num_heads, kv_heads, head_dim, block_size, block_tables.shape[1], scale, torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("paged decode attention (CPU): out of memory for its per-thread scores")
    return out


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def paged_decode_cpu(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: DecodeBatch, scale: float) -> torch.Tensor:
    """`paged_decode_torch`'s contract."""
    return attend(q, None, None, k_cache, v_cache, batch.block_tables, batch.context_lens, None, scale)


def paged_decode_cpu_engine(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: DecodeBatch, scale: float) -> torch.Tensor:
    """`paged_decode_cpu` without the checks, for the engine (decode_function("cpu")):
    its caches and step tensors are its own, float32 and contiguous, and its block tables
    and lengths come from its block manager. (q may be the decode rows of a mixed step.)"""
    return attend_unchecked(q.contiguous(), None, None, k_cache, v_cache, batch.block_tables, batch.context_lens, None, scale)


@torch.library.custom_op("treadle::paged_decode_cpu", mutates_args=())
def paged_decode_cpu_op(
    q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    block_tables: torch.Tensor, num_cached: torch.Tensor, new_visible: torch.Tensor, scale: float,
) -> torch.Tensor:
    """`paged_decode_inline`'s contract."""
    return attend(q, k_new, v_new, k_cache, v_cache, block_tables, num_cached, new_visible, scale)


@paged_decode_cpu_op.register_fake
def _(q, k_new, v_new, k_cache, v_cache, block_tables, num_cached, new_visible, scale):
    return torch.empty_like(q)
