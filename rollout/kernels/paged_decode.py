"""Paged decode attention: one query token per sequence against its KV blocks.

    out = paged_decode_torch(q, k_cache, v_cache, DecodeBatch(block_tables, context_lens), scale)

q [B, num_heads, head_dim]; k_cache, v_cache [num_blocks, block_size, num_kv_heads,
head_dim]; block_tables [B, max_blocks] (entries past a sequence's last block are
padding and ignored); context_lens [B] (each >= 1: the keys at positions
0 .. context_len - 1). Grouped-query attention: query head h reads KV head
h // (num_heads // num_kv_heads). Returns [B, num_heads, head_dim]. A `DecodeBatch` is
built once per engine step and shared by every layer, so what a kernel derives from the
block tables (the torch path's gather index and length mask) is computed once.

`paged_decode_torch` is the reference and the CPU path: it gathers each sequence's
blocks with one `index_select` into a padded [B, max_blocks * block_size] view and runs
`scaled_dot_product_attention` with an additive length mask, presenting the query heads
that share a KV head as that head's queries ([B, kv_heads, group, head_dim]), which reads
each KV head once (measured twice as fast on CPU as SDPA's `enable_gqa` for the tiny
preset's 4:2 heads). The gathered K and V land in the batch's `Workspace` when it has
one: buffers the engine keeps across layers and steps, so a step does not allocate a
fresh copy of every sequence's history in every layer (the decode footprint stays the
cache plus one layer's gather, more of which stays in the CPU's caches: about 5% of a
CPU decode run). On CPU this path is memory-bound: with caches cold, gather + SDPA and
SDPA over an already dense copy of the KV take the same time.

The Triton kernel (`rollout/kernels/paged_decode_triton.py`) walks the block table
instead of gathering, reads each KV head once for all the query heads that share it, and
splits long contexts over several programs when the batch alone would leave the GPU
idle (flash-decoding); `decode_function("triton")` imports it only when chosen. The CPU
kernel (`rollout/kernels/cpu/attention.py`, C) also reads the cache in place, 5-8x
faster than this path on the tiny preset's shapes; `choose_kernel` resolves
EngineConfig.decode_kernel=auto to it where it can be built.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rollout.errors import EngineConfigError

KERNELS = ("torch", "cpu", "triton")


class Workspace:
    """Scratch tensors reused from call to call, grown when a bigger one is asked for."""

    def __init__(self):
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A contiguous tensor of `shape` whose contents are undefined; valid until the next
        `take` of the same name."""
        numel = math.prod(shape)
        key = (name, dtype, device)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel].view(shape)


@dataclass
class DecodeBatch:
    block_tables: torch.Tensor
    """[B, max_blocks] int64 block ids; padding past a sequence's blocks is ignored."""
    context_lens: torch.Tensor
    """[B] int64: sequence b attends to its keys at positions 0 .. context_lens[b] - 1."""
    workspace: Workspace | None = None
    """Where the torch path gathers K and V (None: fresh tensors); ignored by Triton."""
    _masks: dict = field(default_factory=dict, repr=False)

    def additive_mask(self, block_size: int, dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, 1, max_blocks * block_size]: 0 for a visible key, -inf for padding."""
        key = (block_size, dtype)
        if key not in self._masks:
            length = self.block_tables.shape[1] * block_size
            positions = torch.arange(length, device=self.context_lens.device)
            hidden = positions[None, :] >= self.context_lens[:, None]
            mask = torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(hidden, float("-inf"))
            self._masks[key] = mask[:, None, None, :]
        return self._masks[key]


def paged_decode_torch(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: DecodeBatch, scale: float
) -> torch.Tensor:
    num_seqs, max_blocks = batch.block_tables.shape
    _, block_size, kv_heads, head_dim = k_cache.shape
    num_heads = q.shape[1]
    length = max_blocks * block_size
    index = batch.block_tables.reshape(-1)
    k, v = _gather(k_cache, index, batch.workspace, "k"), _gather(v_cache, index, batch.workspace, "v")
    k = k.view(num_seqs, length, kv_heads, head_dim).transpose(1, 2)
    v = v.view(num_seqs, length, kv_heads, head_dim).transpose(1, 2)
    grouped = q.view(num_seqs, kv_heads, num_heads // kv_heads, head_dim)
    mask = batch.additive_mask(block_size, q.dtype)
    out = F.scaled_dot_product_attention(grouped, k, v, attn_mask=mask, scale=scale)
    return out.reshape(num_seqs, num_heads, head_dim)


def _gather(cache: torch.Tensor, index: torch.Tensor, workspace: Workspace | None, name: str) -> torch.Tensor:
    """cache[index] along the block dimension, into the workspace when there is one."""
    if workspace is None:
        return cache.index_select(0, index)
    out = workspace.take(name, (index.numel(), *cache.shape[1:]), cache.dtype, cache.device)
    return torch.index_select(cache, 0, index, out=out)


def choose_kernel(kernel: str, device: torch.device, dtype: torch.dtype) -> str:
    """EngineConfig.decode_kernel with `auto` resolved; raises EngineConfigError when the
    CPU kernel is asked for by name and cannot be built."""
    if kernel not in ("auto", "cpu"):
        return kernel
    if device.type == "cuda" and kernel == "auto":
        return "triton" if _triton_installed() else "torch"
    if device.type != "cpu" or dtype != torch.float32:
        if kernel == "cpu":
            raise EngineConfigError(f"engine.decode_kernel=cpu runs float32 on a CPU, not {dtype} on {device}")
        return "torch"
    from rollout.kernels.cpu.build import available

    problem = available()
    if problem is None:
        return "cpu"
    if kernel == "cpu":
        raise EngineConfigError(f"engine.decode_kernel=cpu: {problem}")
    warnings.warn(f"engine.decode_kernel=auto: the CPU kernel is unavailable ({problem}); using torch", RuntimeWarning)
    return "torch"


def _triton_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def decode_function(kernel: str):
    """The decode attention implementation named by EngineConfig.decode_kernel (resolved)."""
    if kernel == "torch":
        return paged_decode_torch
    if kernel == "cpu":
        from rollout.kernels.cpu.attention import paged_decode_cpu_engine

        return paged_decode_cpu_engine
    if kernel == "triton":
        from rollout.kernels.paged_decode_triton import paged_decode_triton

        return paged_decode_triton
    raise ValueError(f"unknown decode kernel {kernel!r} (known: {', '.join(KERNELS)})")
