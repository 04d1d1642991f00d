"""The decode step of the paged model on CPU with the C kernels (EngineConfig.decode_kernel=cpu).

A step whose chunks are all one-token decodes (the steady state of generation) runs
`decode_forward_cpu` instead of `PagedLlama.forward`: the same arithmetic, with the work
between the matmuls done by rollout/kernels/cpu. Per layer that is four C calls (residual
+ RMSNorm, RoPE + KV write, attention, SiLU gate; the second residual + RMSNorm) beside
the four matmuls, where the torch path dispatches about twenty ops, each of which costs
more than its arithmetic at a decode step's size (a few dozen rows). The hidden state `h`
is updated in place; the residual of each layer's MLP is added by the next layer's norm.

Steps with a prefill chunk keep `PagedLlama.forward`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rollout.kernels.cpu.attention import attend
from rollout.kernels.cpu.elementwise import add_rms_norm, rope_write, silu_mul
from rollout.paged.model import PagedLlama


def decode_forward_cpu(
    model: PagedLlama,
    kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    slots: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    logits_rows: torch.Tensor | None,
) -> torch.Tensor:
    """Float32 logits of `logits_rows` (None: every row) for one decode token per row.

    Row b is at positions[b]; its K/V are written to slots[b] (-1: already cached) before
    it attends to positions 0 .. context_lens[b] - 1 of its block table."""
    s, w = model.shape, model.weights
    h = F.embedding(input_ids, w.embed)
    x = torch.empty_like(h)
    residual = None
    for layer, (qkv_proj, o_proj, gate_up_proj, down_proj), (k_cache, v_cache) in zip(w.layers, model.linears, kv_caches):
        add_rms_norm(h, residual, layer.input_norm, s.rms_norm_eps, out=x)
        q = rope_write(qkv_proj(x), positions, model.rope.cos, model.rope.signed_sin, k_cache, v_cache, slots, s.num_heads)
        attn = attend(q, None, None, k_cache, v_cache, block_tables, context_lens, None, model.scale)
        add_rms_norm(h, o_proj(attn.view(h.shape[0], -1)), layer.post_norm, s.rms_norm_eps, out=x)
        residual = down_proj(silu_mul(gate_up_proj(x)))
    add_rms_norm(h, residual, w.norm, s.rms_norm_eps, out=x)
    if logits_rows is not None:
        x = x.index_select(0, logits_rows)
    return model.lm_head(x).float()
