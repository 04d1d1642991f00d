"""The decode step's elementwise work in C (elementwise.c), each beside its torch reference.

    add_rms_norm(h, delta, weight, eps, out)   h += delta; out = rms_norm(h, weight)
                                               (model.rms_norm; delta None: no residual)
    q = rope_write(qkv, positions, cos, signed_sin, k_cache, v_cache, slots, num_heads,
                   q_norm=None, k_norm=None, eps=0.0)
                                               model.apply_rope on q and k (after
                                               model.rms_norm of each head with q_norm /
                                               k_norm, if given: Qwen3), then
                                               attention.write_kv of k and v (slot -1: none)
    act = silu_mul(gate_up)                    F.silu(gate) * up

Float32 CPU tensors with contiguous rows; these functions check that and name what is
wrong. The `*_unchecked` forms skip the checks, for the engine's decode step
(rollout/paged/ops.py: CpuOps), whose tensors are its own. Results agree with the torch
references to float32 rounding: sums run in another order, and exp is vec.h's polynomial.
"""
from __future__ import annotations

import functools

import torch

from rollout.kernels.cpu.build import FLOAT, INT, POINTER, SIZE, check_float32, function, require


@functools.cache
def _kernels():
    return (
        function("treadle_add_rms_norm_f32", *[POINTER] * 3, FLOAT, POINTER, SIZE, SIZE, INT),
        function("treadle_rope_write_f32", *[POINTER] * 6, FLOAT, *[POINTER] * 4, *[SIZE] * 4, INT),
        function("treadle_silu_mul_f32", POINTER, POINTER, SIZE, SIZE, INT),
    )


def _check(**tensors: torch.Tensor) -> None:
    check_float32(**{name: t for name, t in tensors.items() if t.dtype != torch.long})
    for name, tensor in tensors.items():
        require(tensor.is_contiguous(), f"{name} must be contiguous")


def add_rms_norm(h: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float, out: torch.Tensor) -> None:
    """h [rows, dim] += delta (in place, unless None); out = RMSNorm(h) * weight."""
    _check(h=h, weight=weight, out=out, **({} if delta is None else {"delta": delta}))
    add_rms_norm_unchecked(h, delta, weight, eps, out)


def add_rms_norm_unchecked(h, delta, weight, eps: float, out) -> None:
    rows, dim = h.shape
    _kernels()[0](
        h.data_ptr(), None if delta is None else delta.data_ptr(), weight.data_ptr(), eps, out.data_ptr(),
        rows, dim, torch.get_num_threads(),
    )


def rope_write(
    qkv: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor,
    k_cache: torch.Tensor, v_cache: torch.Tensor, slots: torch.Tensor, num_heads: int,
    q_norm: torch.Tensor | None = None, k_norm: torch.Tensor | None = None, eps: float = 0.0,
) -> torch.Tensor:
    """qkv [rows, (num_heads + 2 kv_heads) head_dim] -> rotated q [rows, num_heads, head_dim];
    rotated k and v written to the caches at slots[r] (skipped where slots[r] < 0).
    q_norm, k_norm [head_dim] (both or neither): each q / k head RMS-normalised (with
    `eps`) and scaled by them before the rotation."""
    norms = {} if q_norm is None and k_norm is None else {"q_norm": q_norm, "k_norm": k_norm}
    require(all(t is not None for t in norms.values()), "q_norm and k_norm go together")
    _check(qkv=qkv, positions=positions, cos=cos, signed_sin=signed_sin, k_cache=k_cache, v_cache=v_cache, slots=slots, **norms)
    _, _, kv_heads, head_dim = k_cache.shape
    require(all(t.shape == (head_dim,) for t in norms.values()), f"q_norm and k_norm must have shape ({head_dim},)")
    rows = qkv.shape[0]
    require(qkv.shape[1] == (num_heads + 2 * kv_heads) * head_dim and positions.shape == slots.shape == (rows,),
            "qkv, positions and slots do not fit num_heads and the cache")
    if rows:
        require(0 <= int(positions.min()) and int(positions.max()) < cos.shape[0],
                f"a position is outside the RoPE tables (0 .. {cos.shape[0] - 1})")
        require(int(slots.max()) < k_cache.shape[0] * k_cache.shape[1], "a slot is outside the cache")
    return rope_write_unchecked(qkv, positions, cos, signed_sin, k_cache, v_cache, slots, num_heads, q_norm, k_norm, eps)


def rope_write_unchecked(
    qkv, positions, cos, signed_sin, k_cache, v_cache, slots, num_heads: int, q_norm=None, k_norm=None, eps: float = 0.0
) -> torch.Tensor:
    _, _, kv_heads, head_dim = k_cache.shape
    rows = qkv.shape[0]
    q = torch.empty(rows, num_heads, head_dim)
    _kernels()[1](
        qkv.data_ptr(), positions.data_ptr(), cos.data_ptr(), signed_sin.data_ptr(),
        None if q_norm is None else q_norm.data_ptr(), None if k_norm is None else k_norm.data_ptr(), eps,
        q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), slots.data_ptr(), rows, num_heads, kv_heads, head_dim,
        torch.get_num_threads(),
    )
    return q


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up [rows, 2 inter] = [gate | up] -> silu(gate) * up [rows, inter]."""
    _check(gate_up=gate_up)
    return silu_mul_unchecked(gate_up)


def silu_mul_unchecked(gate_up) -> torch.Tensor:
    rows, width = gate_up.shape
    out = torch.empty(rows, width // 2)
    _kernels()[2](gate_up.data_ptr(), out.data_ptr(), rows, width // 2, torch.get_num_threads())
    return out
