"""The elementwise work between the paged model's matmuls, done two ways.

    step = ops.for_step(positions, batch)        once per engine step
    h, x = step.add_rms_norm(h, delta, weight)   residual (delta None: none), then RMSNorm
    q = step.rope_write(qkv, k_cache, v_cache, q_norm, k_norm)
                                                 RoPE on q and k (after a per-head RMSNorm of
                                                 each with q_norm / k_norm, Qwen3; None:
                                                 none); k and v into the cache
    act = step.silu_mul(gate_up)                 SiLU-gated MLP activation

`TorchOps` is torch ops (any device and dtype; rollout/paged/model.py's functions, which
follow transformers' arithmetic). `CpuOps` is the C kernels of rollout/kernels/cpu
(EngineConfig.decode_kernel=cpu: float32 on a CPU), one call each where torch dispatches
two to seven ops per call above; at a decode step's few dozen rows, dispatch is most of
their cost. Both leave the same numbers up to float32 rounding (tests/rollout/test_cpu_kernels.py
checks each kernel; tests/rollout/test_parity.py both engines against transformers).

CpuOps updates `h` in place, TorchOps returns a new tensor; callers use what is returned.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rollout.kernels.cpu.elementwise import add_rms_norm_unchecked, rope_write_unchecked, silu_mul_unchecked
from rollout.paged.attention import AttentionBatch, write_kv
from rollout.paged.model import Rope, apply_rope, rms_norm
from rollout.paged.weights import ModelShape


class TorchOps:
    def __init__(self, shape: ModelShape, rope: Rope):
        self.shape, self.rope = shape, rope

    def for_step(self, positions: torch.Tensor, batch: AttentionBatch) -> "_TorchStep":
        return _TorchStep(self.shape, *self.rope(positions), batch)


class _TorchStep:
    def __init__(self, shape: ModelShape, cos: torch.Tensor, signed_sin: torch.Tensor, batch: AttentionBatch):
        self.shape, self.cos, self.sin, self.batch = shape, cos, signed_sin, batch

    def add_rms_norm(self, h, delta, weight) -> tuple[torch.Tensor, torch.Tensor]:
        if delta is not None:
            h = h + delta
        return h, rms_norm(h, weight, self.shape.rms_norm_eps)

    def rope_write(self, qkv, k_cache, v_cache, q_norm=None, k_norm=None) -> torch.Tensor:
        s, rows = self.shape, qkv.shape[0]
        q_size, kv_size = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim
        qk = qkv[:, : q_size + kv_size].view(rows, -1, s.head_dim)
        if q_norm is not None:  # Qwen3: each head normalised before RoPE, q and k by their own weights
            eps = s.rms_norm_eps
            qk = torch.cat((rms_norm(qk[:, : s.num_heads], q_norm, eps), rms_norm(qk[:, s.num_heads :], k_norm, eps)), dim=1)
        # Rotate q and k heads together: one set of elementwise ops instead of two.
        qk = apply_rope(qk, self.cos, self.sin)
        v = qkv[:, q_size + kv_size :].view(rows, s.num_kv_heads, s.head_dim)
        write_kv(k_cache, v_cache, qk[:, s.num_heads :], v, self.batch)
        return qk[:, : s.num_heads]

    def silu_mul(self, gate_up) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up


class CpuOps:
    """The C kernels, called without their argument checks: every tensor they get here is
    the engine's own, float32 and contiguous (ModelRunner chooses them only then)."""

    def __init__(self, shape: ModelShape, rope: Rope):
        self.shape, self.rope = shape, rope

    def for_step(self, positions: torch.Tensor, batch: AttentionBatch) -> "_CpuStep":
        slots = batch.slots  # per row: its KV's slot, -1 where its KV is cached already
        if batch.write_rows is not None:
            slots = torch.full_like(positions, -1).index_copy_(0, batch.write_rows, batch.slots)
        return _CpuStep(self, positions, slots)


class _CpuStep:
    def __init__(self, ops: CpuOps, positions: torch.Tensor, slots: torch.Tensor):
        self.ops, self.positions, self.slots = ops, positions, slots

    def add_rms_norm(self, h, delta, weight) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.empty_like(h)
        add_rms_norm_unchecked(h, delta, weight, self.ops.shape.rms_norm_eps, x)
        return h, x

    def rope_write(self, qkv, k_cache, v_cache, q_norm=None, k_norm=None) -> torch.Tensor:
        rope, shape = self.ops.rope, self.ops.shape
        return rope_write_unchecked(
            qkv, self.positions, rope.cos, rope.signed_sin, k_cache, v_cache, self.slots, shape.num_heads,
            q_norm, k_norm, shape.rms_norm_eps,
        )

    def silu_mul(self, gate_up) -> torch.Tensor:
        return silu_mul_unchecked(gate_up)
