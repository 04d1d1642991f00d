"""Attention over the paged KV cache, for a flat batch of chunks from many sequences.

Cache layout, per layer: `k_cache`, `v_cache` of shape [num_blocks, block_size,
num_kv_heads, head_dim]; token position p of a sequence lives in slot
`block_table[p // block_size] * block_size + p % block_size`.

A step's tokens are laid out decode-first: the first `num_decode` rows are one-token
chunks (decodes, and the re-run last query of a fully cached prompt), batched into one
call of the decode kernel (`rollout.kernels.paged_decode`, torch or Triton). The rest are
prefill chunks, in groups of similar length (rollout/paged/layout.py); a group's
queries are padded to its longest chunk and attend, through their block tables, to their
sequence's cached prefix plus themselves in one `scaled_dot_product_attention` call. A
padding query repeats its chunk's last position, so no mask row is empty, and its output
is dropped.

New K/V are written into the cache before attention reads it, so a chunk sees its own
keys through the same block-table path as its prefix. Everything derived from the block
tables (gather indices, masks) is built once per step and shared by every layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from rollout.kernels.paged_decode import DecodeBatch

DecodeFn = Callable[..., torch.Tensor]
"""paged_decode(q, k_cache, v_cache, DecodeBatch, scale) -> [B, num_heads, head_dim]."""


@dataclass
class PrefillGroup:
    first_row: int
    """The group's chunks occupy rows [first_row, first_row + num_rows) of the flat batch."""
    num_rows: int
    query_rows: torch.Tensor
    """[num_chunks * max_len] flat-batch row feeding each padded query slot."""
    output_slots: torch.Tensor
    """[num_rows] padded slot holding each real row's output, in row order."""
    block_tables: torch.Tensor
    """[num_chunks, max_blocks] each chunk's blocks, covering its positions."""
    mask: torch.Tensor
    """[num_chunks, 1, max_len, max_blocks * block_size] additive causal mask."""


@dataclass
class AttentionBatch:
    slots: torch.Tensor
    """Cache slot of each token whose KV is written, in row order."""
    write_rows: torch.Tensor | None
    """Rows whose KV is written (None: every row)."""
    num_decode: int
    decode: DecodeBatch
    """Block tables (padding points at block 0 and is masked) and context lengths (each
    row's position + 1) of the first `num_decode` rows."""
    prefills: list[PrefillGroup]


def prefill_mask(starts: torch.Tensor, lengths: torch.Tensor, max_len: int, num_keys: int, dtype) -> torch.Tensor:
    """Query i of chunk c sits at position starts[c] + i (padding: its last position) and
    sees keys 0 .. that position."""
    offsets = torch.minimum(torch.arange(max_len, device=starts.device)[None, :], lengths[:, None] - 1)
    positions = starts[:, None] + offsets
    hidden = torch.arange(num_keys, device=starts.device)[None, None, :] > positions[:, :, None]
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(hidden, float("-inf"))[:, None]


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: AttentionBatch) -> None:
    if batch.write_rows is not None:
        k, v = k.index_select(0, batch.write_rows), v.index_select(0, batch.write_rows)
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, batch.slots, k)
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, batch.slots, v)


def paged_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: AttentionBatch, scale: float, decode: DecodeFn
) -> torch.Tensor:
    """q: [num_tokens, num_heads, head_dim] -> attention output of the same shape."""
    if not batch.prefills:
        return decode(q, k_cache, v_cache, batch.decode, scale)
    out = torch.empty_like(q)
    if batch.num_decode:
        out[: batch.num_decode] = decode(q[: batch.num_decode], k_cache, v_cache, batch.decode, scale)
    for group in batch.prefills:
        rows = slice(group.first_row, group.first_row + group.num_rows)
        out[rows] = prefill_attention(q, k_cache, v_cache, group, scale)
    return out


def prefill_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, group: PrefillGroup, scale: float
) -> torch.Tensor:
    """Outputs [group.num_rows, num_heads, head_dim] of one prefill group."""
    num_chunks, max_blocks = group.block_tables.shape
    _, block_size, kv_heads, head_dim = k_cache.shape
    num_keys = max_blocks * block_size
    index = group.block_tables.reshape(-1)
    k = k_cache.index_select(0, index).view(num_chunks, num_keys, kv_heads, head_dim).transpose(1, 2)
    v = v_cache.index_select(0, index).view(num_chunks, num_keys, kv_heads, head_dim).transpose(1, 2)
    queries = q.index_select(0, group.query_rows).view(num_chunks, -1, *q.shape[1:]).transpose(1, 2)
    out = F.scaled_dot_product_attention(queries, k, v, attn_mask=group.mask, scale=scale, enable_gqa=True)
    return out.transpose(1, 2).reshape(-1, *q.shape[1:]).index_select(0, group.output_slots)
