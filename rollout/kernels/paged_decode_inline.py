"""Paged decode attention as plain elementwise ops and reductions, for torch.compile.

    out = paged_decode_inline(q, k_new, v_new, k_cache, v_cache, block_tables, num_cached, new_visible, scale)

The same attention as `paged_decode_torch` (rollout/kernels/paged_decode.py), written so
that inductor's CPU backend fuses it into one loop nest per layer: the block-table gather
`k_cache[block_tables]` is never materialised, it becomes an indirect load inside the
q.k reduction (and the p.v one), so every cached key and value is read once, in place.
Eagerly this formulation is slower than gather + SDPA (it builds [B, T, kv_heads,
group, head_dim] products); it exists to be compiled (rollout/paged/decode_graph.py).

The current token's key and value are arguments rather than cache reads, so the compiled
step need not write the cache before attending (no in-graph mutation of the cache):

    q, k_new, v_new  [B, num_heads | num_kv_heads, head_dim]: this step's projections
    k_cache, v_cache [num_blocks, block_size, num_kv_heads, head_dim]
    block_tables     [B, max_blocks] int64 (padding past a sequence's blocks is ignored)
    num_cached       [B] int64: row b attends to its cached keys at positions 0 .. num_cached[b] - 1
    new_visible      [B] bool: row b also attends to k_new[b] (False for a row whose
                     KV is already cached, e.g. the re-run last token of a cached prompt;
                     every row sees at least one key: num_cached[b] > 0 or new_visible[b])

Returns [B, num_heads, head_dim] in q's dtype; the softmax is computed in float32.
"""
from __future__ import annotations

import torch


def paged_decode_inline(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    num_cached: torch.Tensor,
    new_visible: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    group = num_heads // kv_heads
    num_keys = block_tables.shape[1] * block_size
    # Query heads sharing a KV head sit next to each other: [B, kv_heads, group, head_dim].
    queries = q.float().view(num_seqs, kv_heads, group, head_dim) * scale
    keys = k_cache[block_tables].view(num_seqs, num_keys, kv_heads, 1, head_dim).float()
    values = v_cache[block_tables].view(num_seqs, num_keys, kv_heads, 1, head_dim).float()
    cached = torch.arange(num_keys, device=q.device)[None, :] < num_cached[:, None]  # [B, T]
    scores = (queries[:, None] * keys).sum(-1).masked_fill(~cached[:, :, None, None], float("-inf"))  # [B, T, kv, g]
    new_score = (queries * k_new.float()[:, :, None, :]).sum(-1)  # [B, kv, g]
    new_score = new_score.masked_fill(~new_visible[:, None, None], float("-inf"))
    peak = torch.maximum(scores.amax(dim=1), new_score)
    weights = torch.exp(scores - peak[:, None])
    new_weight = torch.exp(new_score - peak)
    total = weights.sum(dim=1) + new_weight
    out = (weights[..., None] * values).sum(dim=1) + new_weight[..., None] * v_new.float()[:, :, None, :]
    return (out / total[..., None]).view(num_seqs, num_heads, head_dim).to(q.dtype)
