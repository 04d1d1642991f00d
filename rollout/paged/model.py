"""The paged engine's forward pass of a Llama-family decoder, on a flat batch of tokens.

Tokens of all scheduled chunks are concatenated (no padding): embeddings, norms, the
fused q/k/v and gate/up projections and the MLP run on [num_tokens, hidden] at once;
only attention looks at sequence boundaries, through the paged KV cache
(rollout/paged/attention.py). Logits are computed only for the rows that sample. The
norms, RoPE with the KV write, and the SiLU gate are `ops` (rollout/paged/ops.py): torch
ops, or the C kernels of the CPU path.

The arithmetic follows transformers' LlamaForCausalLM step for step (RMSNorm in float32,
RoPE with the rotate-half convention and the same cos/sin, SiLU-gated MLP), and for
Qwen3 its Qwen3Attention's per-head q/k RMSNorm before RoPE, so greedy outputs match the
`hf` backend token for token in float32. The variants it covers are listed in
rollout/paged/weights.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig

from rollout.errors import UnsupportedModel
from rollout.paged.attention import AttentionBatch, DecodeFn, paged_attention
from rollout.paged.linear import Linear
from rollout.paged.weights import LlamaWeights, ModelShape

if TYPE_CHECKING:  # ops.py builds on this module's functions
    from rollout.paged.ops import CpuOps, TorchOps


class Rope:
    """cos/sin tables for every position up to `max_positions`, as transformers computes them.

    The sin table is stored with its first half negated, so that rotate_half(x) * sin
    becomes cat(x2, x1) * signed_sin: the same products, one op fewer per layer."""

    def __init__(self, config: PretrainedConfig, head_dim: int, max_positions: int, dtype: torch.dtype, device):
        params = getattr(config, "rope_parameters", None) or {}
        rope_type = params.get("rope_type", "default")
        if rope_type == "default":
            theta = params.get("rope_theta", getattr(config, "rope_theta", 10_000.0))
            inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
            scaling = 1.0
        elif rope_type == "dynamic":
            raise UnsupportedModel("rope_parameters.rope_type 'dynamic' changes with sequence length; not supported")
        else:
            from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

            if rope_type not in ROPE_INIT_FUNCTIONS:
                raise UnsupportedModel(f"rope_parameters.rope_type {rope_type!r} is unknown to transformers")
            inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"))
        positions = torch.arange(max_positions, dtype=torch.float)
        freqs = positions[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * scaling).to(dtype=dtype, device=device)
        sin = (emb.sin() * scaling).to(dtype=dtype, device=device)
        half = head_dim // 2
        self.signed_sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)

    def __call__(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, signed sin of shape [num_tokens, 1, head_dim] (broadcast over heads)."""
        return self.cos.index_select(0, positions)[:, None, :], self.signed_sin.index_select(0, positions)[:, None, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1) written as
    cat(x2, x1) times a sin whose first half is negated. (Not `x.roll`, the same values:
    torch.compile cannot trace roll over a batch of symbolic size.)"""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * signed_sin


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalise in float32, scale in the model dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)  # one fused op, the same arithmetic
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


class PagedLlama:
    def __init__(
        self, shape: ModelShape, weights: LlamaWeights, rope: Rope, decode: DecodeFn, packed_linear: bool,
        ops: "TorchOps | CpuOps",
    ):
        """`ops`: the elementwise work between the matmuls (rollout/paged/ops.py)."""
        self.shape = shape
        self.weights = weights
        self.rope = rope
        self.decode = decode
        self.ops = ops
        self.scale = shape.head_dim**-0.5
        self.linears = [
            (
                Linear(layer.qkv, layer.qkv_bias, packed_linear),
                Linear(layer.o, layer.o_bias, packed_linear),
                Linear(layer.gate_up, layer.gate_up_bias, packed_linear),
                Linear(layer.down, layer.down_bias, packed_linear),
            )
            for layer in weights.layers
        ]
        self.lm_head = Linear(weights.lm_head, None, packed_linear)

    def refresh(self) -> None:
        """Re-derive what is computed from the weights (packed matrices) after an update."""
        for linears in self.linears:
            for linear in linears:
                linear.refresh()
        self.lm_head.refresh()

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        batch: AttentionBatch,
        logits_rows: torch.Tensor | None,
    ) -> torch.Tensor:
        """Float32 logits [len(logits_rows), vocab] of the rows that sample (None: every row).

        Each layer's MLP output is added to the residual stream by the next layer's norm
        (the final norm for the last layer), which is where transformers adds it too."""
        w = self.weights
        step = self.ops.for_step(positions, batch)
        h = F.embedding(input_ids, w.embed)
        mlp_out = None
        for layer, (qkv_proj, o_proj, gate_up_proj, down_proj), (k_cache, v_cache) in zip(w.layers, self.linears, kv_caches):
            h, x = step.add_rms_norm(h, mlp_out, layer.input_norm)
            # writes the new K/V before attention reads
            q = step.rope_write(qkv_proj(x), k_cache, v_cache, layer.q_norm, layer.k_norm)
            attn = paged_attention(q, k_cache, v_cache, batch, self.scale, self.decode)
            h, x = step.add_rms_norm(h, o_proj(attn.reshape(h.shape[0], -1)), layer.post_norm)
            mlp_out = down_proj(step.silu_mul(gate_up_proj(x)))
        if logits_rows is not None:
            h, mlp_out = h.index_select(0, logits_rows), mlp_out.index_select(0, logits_rows)
        _, x = step.add_rms_norm(h, mlp_out, w.norm)
        return self.lm_head(x).float()
