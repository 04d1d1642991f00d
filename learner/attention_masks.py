"""Attention masks of packed rows, from per-token metadata: one rule, two materializations.

A mask is a `mask_mod(b, h, q, kv) -> bool` (FlexAttention's signature: row, head, query
and key index) over per-token tensors it closes over. `span_mask_mod(attend_end)` is
the one rule the learner uses: key slot kv is visible to query slots kv .. attend_end[kv] - 1:

    visible(q, kv) = kv <= q < attend_end[b, kv]

which is causal attention restricted to kv's span. Packed sequences give each token the
end of its own sequence (`segment_attend_end`), so a packed row attends block-diagonally
and causally, and a padding slot's span is itself only (a softmax row never fully
masked, as the dense mask always had it). The same rule covers prefix-shared thread
trees (learner/prefix_tree.py: attend_end = the end of a token's subtree, so a token
sees its own thread and its ancestors' prefix) with no change here.

Materializations, evaluated by broadcasting index tensors (no vmap, no compile):
  - `dense_mask`: [rows, 1, L, L] bool (True = may attend), for SDPA (the CPU path);
  - `block_mask`: a FlexAttention BlockMask (learner/packed_attention.py, the CUDA path),
    built a chunk of query blocks at a time, so memory stays at about `max_elements`
    booleans whatever the row length (create_block_mask without compile materializes
    all rows x L x L; compiled, it recompiles per shape).
Metadata is padded to whole blocks, so the kernels' partial tail block never indexes
past it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BLOCK = 128  # FlexAttention's sparse block size (query and key)


def segment_attend_end(segment_ids: torch.Tensor) -> torch.Tensor:
    """[rows, L] int64: the end (exclusive) of each token's sequence, from packed segment
    ids (each sequence one contiguous run, 0 = padding); a padding slot's end is itself + 1."""
    segments = torch.as_tensor(segment_ids)
    rows, length = segments.shape
    index = torch.arange(length, device=segments.device).expand(rows, length)
    last = torch.ones_like(segments, dtype=torch.bool)  # slot p ends its run
    last[:, :-1] = segments[:, 1:] != segments[:, :-1]
    ends = torch.where(last, index + 1, length)
    # Each slot takes the nearest run end at or after it: a cumulative min from the right.
    ends = torch.flip(torch.cummin(torch.flip(ends, [1]), dim=1).values, [1])
    return torch.where(segments > 0, ends, index + 1)


def span_mask_mod(attend_end: torch.Tensor) -> MaskMod:
    """kv is visible to q iff kv <= q < attend_end[b, kv] (`attend_end` [rows, L])."""
    length = attend_end.shape[-1]
    padded = torch.nn.functional.pad(attend_end, (0, -length % BLOCK))  # end 0: nothing sees it

    def mask_mod(b, h, q, kv):
        return (kv <= q) & (q < padded[b, kv])

    return mask_mod


def segment_mask_mod(segment_ids: torch.Tensor) -> MaskMod:
    """Packed rows' rule: each token sees its own sequence, causally; padding only itself."""
    return span_mask_mod(segment_attend_end(segment_ids))


def dense_mask(mask_mod: MaskMod, rows: int, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[rows, 1, length, length] bool, True where `mask_mod` allows attention."""
    b, h, q, kv = _indices(rows, torch.arange(length, device=device), length, device)
    return mask_mod(b, h, q, kv).expand(rows, 1, length, length)


def block_mask(
    mask_mod: MaskMod, rows: int, length: int, device: torch.device | str, max_elements: int = 1 << 26
) -> BlockMask:
    """The BlockMask of `mask_mod` over [rows, 1 head (shared), length, length]: blocks of
    BLOCK x BLOCK that `mask_mod` allows entirely are full (the kernel skips the mask there),
    those it allows in part are partial, the rest are skipped."""
    num_blocks = -(-length // BLOCK)
    padded = num_blocks * BLOCK
    step = max(1, max_elements // (rows * padded * BLOCK)) * BLOCK  # query slots per chunk, whole blocks
    partial, full = [], []
    for start in range(0, padded, step):
        queries = torch.arange(start, min(start + step, padded), device=device)
        b, h, q, kv = _indices(rows, queries, padded, device)
        allowed = mask_mod(b, h, q, kv) & (q < length) & (kv < length)
        allowed = allowed.expand(rows, 1, len(queries), padded).reshape(rows, 1, -1, BLOCK, num_blocks, BLOCK)
        some, every = allowed.any(dim=5).any(dim=3), allowed.all(dim=5).all(dim=3)
        partial.append(some & ~every)
        full.append(every)
    return BlockMask.from_kv_blocks(
        *_ordered(torch.cat(partial, dim=2)), *_ordered(torch.cat(full, dim=2)),
        BLOCK_SIZE=BLOCK, mask_mod=mask_mod, seq_lengths=(length, length),
    )  # fmt: skip


def _indices(rows: int, queries: torch.Tensor, length: int, device) -> tuple[torch.Tensor, ...]:
    """Row, head, query and key indices shaped to broadcast to [rows, 1, queries, length]."""
    b = torch.arange(rows, device=device).view(rows, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    return b, h, queries.view(1, 1, -1, 1), torch.arange(length, device=device).view(1, 1, 1, length)


def _ordered(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense [rows, 1, query blocks, key blocks] bool -> (count per query block, key block
    indices with the chosen ones first, in ascending order): BlockMask's kv layout."""
    dense = blocks.to(torch.int32)
    indices = torch.argsort(dense, dim=-1, descending=True, stable=True)
    return dense.sum(-1).to(torch.int32).contiguous(), indices.to(torch.int32).contiguous()
