"""Triton kernels for `logprob_and_entropy(..., backend="triton")` (learner/fused_logprob.py).

Forward: one program per block of BLOCK_N tokens walks the vocabulary in tiles of
BLOCK_V, computing each [BLOCK_N, BLOCK_V] logits tile with `tl.dot` over BLOCK_H slices
of the hidden size, and keeps per token a running max m, s = sum exp(z - m),
u = sum exp(z - m) (z - m) and the target logit (online logsumexp). At the end
lse = m + log s and entropy = log s - u / s (= lse - E_p[z], without subtracting two
large numbers). Nothing of size N * V is ever stored, so the forward needs no chunking.

Backward: per chunk of `chunk_size` tokens, a 2-D grid of (token block, vocab tile)
programs recomputes each logits tile from hidden and the fp32 head and writes the
gradient of the logits (derivation in `grad_logits_torch`) into a [chunk, V] fp32
buffer; the chunk loop and the two matmuls (grad_hidden = G @ W, grad_W += G.T @ h) are
shared with the torch backend (`backward_by_chunks`) and run on cuBLAS. A single-pass
backward with atomics into grad_W is not done: it would be nondeterministic.

Dots: fp32 inputs use `input_precision="ieee"` (no TF32), matching the torch path;
two 16-bit inputs of one dtype are dotted natively with fp32 accumulation, which is
exact per product. The interpreter cannot check the bf16 case (its `tl.dot` multiplies
bf16 bit patterns: triton-lang/triton#11584, unsupported there), so CPU tests cover fp32
and fp16, which takes the same native-dot path. Block sizes are fixed (no autotuning)
and capped by the MAX_BLOCK_* constants below; tests lower them to cover partial tiles.

This module imports triton at import time; learner/fused_logprob.py imports it only
when `backend="triton"` is chosen. On CPU it runs only under TRITON_INTERPRET=1.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from learner.fused_logprob import backward_by_chunks
from learner.packing import IGNORE

MAX_BLOCK_N, MAX_BLOCK_V, MAX_BLOCK_H = 64, 128, 64


@triton.jit
def _logits_tile(
    h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, stride_h, stride_w,
    UPCAST: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
):
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for k in range(tl.cdiv(H, BLOCK_H)):
        dims = k * BLOCK_H + tl.arange(0, BLOCK_H)
        dim_ok = dims < H
        a = tl.load(h_ptr + rows[:, None] * stride_h + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
        b = tl.load(w_ptr + cols[:, None] * stride_w + dims[None, :], mask=col_ok[:, None] & dim_ok[None, :], other=0.0)
        if UPCAST:
            acc = tl.dot(a.to(tl.float32), tl.trans(b.to(tl.float32)), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(b), acc)
    return acc


@triton.jit
def _forward_kernel(
    h_ptr, w_ptr, t_ptr, logprob_ptr, entropy_ptr, lse_ptr, N, V, H, stride_h, stride_w,
    IGNORE_ID: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    targets = tl.load(t_ptr + rows, mask=row_ok, other=IGNORE_ID)
    run_max = tl.full([BLOCK_N], float("-inf"), tl.float32)
    sum_exp = tl.zeros([BLOCK_N], dtype=tl.float32)
    sum_exp_shift = tl.zeros([BLOCK_N], dtype=tl.float32)
    target_logit = tl.zeros([BLOCK_N], dtype=tl.float32)
    for v in range(tl.cdiv(V, BLOCK_V)):
        cols = v * BLOCK_V + tl.arange(0, BLOCK_V)
        col_ok = cols < V
        z = _logits_tile(h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, stride_h, stride_w,
                         UPCAST, BLOCK_N, BLOCK_V, BLOCK_H)
        z = tl.where(col_ok[None, :], z, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=1))
        scale = tl.exp(run_max - new_max)
        shift = tl.where(col_ok[None, :], z - new_max[:, None], 0.0)
        e = tl.where(col_ok[None, :], tl.exp(shift), 0.0)
        # Old terms: exp(z - m_old)(z - m_old) -> scale * exp(z - m_old)((z - m_old) + (m_old - m_new)).
        moved = sum_exp * tl.where(sum_exp > 0, run_max - new_max, 0.0)  # no 0 * -inf on the first tile
        sum_exp_shift = scale * (sum_exp_shift + moved) + tl.sum(e * shift, axis=1)
        sum_exp = scale * sum_exp + tl.sum(e, axis=1)
        target_logit += tl.sum(tl.where(cols[None, :] == targets[:, None], z, 0.0), axis=1)
        run_max = new_max
    log_sum = tl.log(sum_exp)
    lse = run_max + log_sum
    entropy = log_sum - sum_exp_shift / sum_exp
    logprob = tl.where(targets != IGNORE_ID, target_logit - lse, 0.0)
    tl.store(logprob_ptr + rows, logprob, mask=row_ok)
    tl.store(entropy_ptr + rows, entropy, mask=row_ok)
    tl.store(lse_ptr + rows, lse, mask=row_ok)


@triton.jit
def _grad_logits_kernel(
    h_ptr, w_ptr, t_ptr, lse_ptr, entropy_ptr, grad_logprob_ptr, grad_entropy_ptr, out_ptr,
    N, V, H, stride_h, stride_w, stride_out,
    UPCAST: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    row_ok = rows < N
    col_ok = cols < V
    z = _logits_tile(h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, stride_h, stride_w,
                     UPCAST, BLOCK_N, BLOCK_V, BLOCK_H)
    targets = tl.load(t_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    entropy = tl.load(entropy_ptr + rows, mask=row_ok, other=0.0)
    grad_logprob = tl.load(grad_logprob_ptr + rows, mask=row_ok, other=0.0)
    grad_entropy = tl.load(grad_entropy_ptr + rows, mask=row_ok, other=0.0)
    logp = z - lse[:, None]
    p = tl.exp(logp)
    grad = -grad_entropy[:, None] * p * (logp + entropy[:, None]) - grad_logprob[:, None] * p
    grad += tl.where(cols[None, :] == targets[:, None], grad_logprob[:, None], 0.0)
    tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], grad, mask=row_ok[:, None] & col_ok[None, :])


def _blocks(num_tokens: int, vocab: int, hidden: int) -> dict[str, int]:
    def size(n: int, cap: int) -> int:
        return max(16, min(cap, triton.next_power_of_2(max(n, 1))))  # tl.dot needs >= 16

    return {
        "BLOCK_N": size(num_tokens, MAX_BLOCK_N),
        "BLOCK_V": size(vocab, MAX_BLOCK_V),
        "BLOCK_H": size(hidden, MAX_BLOCK_H),
    }


def _upcast(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    return not (hidden.dtype == weight.dtype and hidden.dtype in (torch.bfloat16, torch.float16))


def forward_stats_triton(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logprob, entropy, lse), each [N] fp32, in one launch over all tokens."""
    (num_tokens, hidden_size), vocab = hidden.shape, weight.shape[0]
    logprob, entropy, lse = (torch.empty(num_tokens, dtype=torch.float32, device=hidden.device) for _ in range(3))
    if num_tokens == 0:
        return logprob, entropy, lse
    blocks = _blocks(num_tokens, vocab, hidden_size)
    _forward_kernel[(triton.cdiv(num_tokens, blocks["BLOCK_N"]),)](
        hidden, weight, targets, logprob, entropy, lse, num_tokens, vocab, hidden_size,
        hidden.stride(0), weight.stride(0), IGNORE_ID=IGNORE, UPCAST=_upcast(hidden, weight), **blocks,
    )
    return logprob, entropy, lse


def grad_logits_triton(
    hidden: torch.Tensor,
    weight32: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
    grad_logprob: torch.Tensor,
    grad_entropy: torch.Tensor,
) -> torch.Tensor:
    """Same contract as `grad_logits_torch`: one chunk's [c, V] fp32 gradient of the logits."""
    (num_tokens, hidden_size), vocab = hidden.shape, weight32.shape[0]
    out = torch.empty(num_tokens, vocab, dtype=torch.float32, device=hidden.device)
    blocks = _blocks(num_tokens, vocab, hidden_size)
    grid = (triton.cdiv(num_tokens, blocks["BLOCK_N"]), triton.cdiv(vocab, blocks["BLOCK_V"]))
    _grad_logits_kernel[grid](
        hidden, weight32, targets.contiguous(), lse.contiguous(), entropy.contiguous(),
        grad_logprob.contiguous(), grad_entropy.contiguous(), out,
        num_tokens, vocab, hidden_size, hidden.stride(0), weight32.stride(0), out.stride(0),
        UPCAST=True, **blocks,
    )
    return out


class TritonLogprobEntropy(torch.autograd.Function):
    """The triton backend; saves what the torch backend saves, so backward is shared."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
        logprob, entropy, lse = forward_stats_triton(hidden, weight, targets)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.chunk_size = chunk_size
        return logprob, entropy

    @staticmethod
    def backward(ctx, grad_logprob: torch.Tensor, grad_entropy: torch.Tensor):
        grad_hidden, grad_weight = backward_by_chunks(ctx, grad_logprob, grad_entropy, grad_logits_triton)
        return grad_hidden, grad_weight, None, None
