"""Triton kernels for `logprob_and_entropy(..., backend="triton")` (learner/fused_logprob.py).

Forward (`_forward_kernel`): program (token block, vocabulary split) computes logits
tiles [BLOCK_N, BLOCK_V] = hidden @ W.T with `tl.dot` over BLOCK_K slices of the hidden
size, for the BLOCK_V tiles of its split in turn, keeping per token a running max m,
s = sum exp(z - m), u = sum exp(z - m)(z - m) and the label's logit, picked from the
tile that holds it (online logsumexp). Each split writes those four numbers;
`forward_stats_triton` merges the splits (lse = m + log s, entropy = log s - u / s).
Nothing of size N * V is ever stored. Splits are the fastest-varying program index, so
the programs running at once share a few token blocks (their hidden rows stay in L2)
and each W tile they stream is read by many of them; there are enough splits to fill the
GPU about four times over when the tokens alone would not.

Backward: the vocabulary is cut into slices of about V / ceil(N / chunk_size) columns,
so a slice's gradient of the logits holds about chunk_size * V elements, as one token
chunk of the torch path does. Per slice, `_grad_logits_kernel` (one program per
(token block, vocab tile), grouped for L2 reuse) recomputes the logits tile, turns it
into dL/dz (derivation in `grad_logits_torch`) and stores it in the dot dtype; then two
cuBLAS GEMMs read that buffer: grad_W[slice] = dz.T @ hidden, written once in place,
and grad_hidden += dz @ W[slice], an fp32 product added to an fp32 [N, H] accumulator.
Slicing the vocabulary rather than the tokens means only the small [N, H] gradient is
accumulated across slices. Not done: fusing the two products into the recomputing
kernel. A program cannot hold a [BLOCK, H] fp32 accumulator for H in the thousands, so
that takes either atomic adds into grad_W and grad_hidden from every (token block, vocab
tile) (N * V * H / 64 of them with 128-wide tiles, in no fixed order: nondeterministic)
or recomputing the logits once per slice of H (H / BLOCK times the forward's work). The
stored dz costs 3 * N * V * 2 bytes of traffic: 15 GB, about 3 ms on an H200, at 16,384
tokens and vocabulary 151,936 (hidden 1536), against 31 TFLOP of dots (4 x 2NVH).

Precision: two 16-bit inputs of one dtype are dotted natively with fp32 accumulation
(products of 16-bit values are exact in fp32, so the logits and every statistic match
the fp32 torch path up to summation order); dz is rounded to that dtype for the two
GEMMs, as autograd rounds the gradient of a bf16 matmul, and gradients come back in the
inputs' dtypes. Any other input (fp32, or mixed dtypes) is dotted in fp32 with
`input_precision="ieee"` (no TF32), which matches the torch path to fp32 rounding but
runs without tensor cores. The interpreter's `tl.dot` multiplies bf16 bit patterns
(triton-lang/triton#11584), so under TRITON_INTERPRET=1 bf16 tiles are upcast to fp32
before the dot (the same products); fp16 takes the native path there too. The
interpreter also rounds fp32 to bf16 toward zero (a GPU rounds to nearest even), so its
bf16 gradients are a little further from the reference than a GPU's.

Loop bounds are constexpr (the hidden size and the tiles per split): Triton compiles
one variant per model and split count (at most 7 split counts), knows when BLOCK_K
divides H (no mask), and triton 3.6's interpreter cannot run `range()` over a runtime
scalar with numpy >= 2.4 ("only 0-dimensional arrays can be converted to Python
scalars"). Tile sizes come from a small table (Hopper: 128 x 128 x 64, 8 warps, 3
stages; no autotuning); tests lower the MAX_BLOCK_* caps to cover partial tiles. This
module imports triton; learner/fused_logprob.py imports it only for backend="triton".
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from learner.packing import IGNORE

MAX_BLOCK_N, MAX_BLOCK_V, MAX_BLOCK_K = 128, 128, 64
_IGNORE = tl.constexpr(IGNORE)  # jit code reads only constexpr globals
MAX_SPLITS = 64
GROUP_N = 8  # token blocks per group in the backward's program order (L2 reuse of W tiles)


@dataclass(frozen=True)
class Tiles:
    """Tile sizes (tokens, vocabulary, hidden) and the launch's warps and pipeline stages."""

    block_n: int
    block_v: int
    block_k: int
    num_warps: int
    num_stages: int


TENSOR_CORE_TILES = Tiles(128, 128, 64, num_warps=8, num_stages=3)  # 16-bit inputs
FP32_TILES = Tiles(64, 64, 32, num_warps=4, num_stages=2)  # ieee fp32 dots on CUDA cores


@triton.jit
def _logits_tile(
    h_ptr, w_ptr, h_offsets, w_offsets, HIDDEN: tl.constexpr, DOT_FP32: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """[BLOCK_N, BLOCK_V] fp32 logits; the offsets are in-range rows of hidden and W."""
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for k in range(0, HIDDEN, BLOCK_K):
        dims = k + tl.arange(0, BLOCK_K)
        if HIDDEN % BLOCK_K == 0:
            a = tl.load(h_ptr + h_offsets[:, None] + dims[None, :])
            b = tl.load(w_ptr + w_offsets[:, None] + dims[None, :])
        else:
            a = tl.load(h_ptr + h_offsets[:, None] + dims[None, :], mask=dims[None, :] < HIDDEN, other=0.0)
            b = tl.load(w_ptr + w_offsets[:, None] + dims[None, :], mask=dims[None, :] < HIDDEN, other=0.0)
        if DOT_FP32:
            acc = tl.dot(a.to(tl.float32), tl.trans(b.to(tl.float32)), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(b), acc)
    return acc


@triton.jit
def _forward_kernel(
    h_ptr, w_ptr, t_ptr, stats_ptr, N, V, stride_h, stride_w,
    HIDDEN: tl.constexpr, NUM_SPLITS: tl.constexpr, TILES_PER_SPLIT: tl.constexpr, DOT_FP32: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    split = tl.program_id(0) % NUM_SPLITS
    rows = (tl.program_id(0) // NUM_SPLITS) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    h_offsets = tl.minimum(rows, N - 1).to(tl.int64) * stride_h  # rows past N recompute row N - 1, unstored
    targets = tl.load(t_ptr + rows, mask=row_ok, other=_IGNORE)
    run_max = tl.full([BLOCK_N], float("-inf"), tl.float32)
    sum_exp = tl.zeros([BLOCK_N], dtype=tl.float32)
    sum_exp_shift = tl.zeros([BLOCK_N], dtype=tl.float32)
    target_logit = tl.zeros([BLOCK_N], dtype=tl.float32)
    for i in range(TILES_PER_SPLIT):  # the first tile of a split always holds columns < V
        cols = (split * TILES_PER_SPLIT + i) * BLOCK_V + tl.arange(0, BLOCK_V)
        col_ok = cols < V
        w_offsets = tl.minimum(cols, V - 1).to(tl.int64) * stride_w
        z = _logits_tile(h_ptr, w_ptr, h_offsets, w_offsets, HIDDEN, DOT_FP32, BLOCK_N, BLOCK_V, BLOCK_K)
        # Columns past V get a logit of -1e30, not -inf: exp gives 0 and 0 * (z - m) stays 0 (no
        # NaN), without masking every later term; the split's first tile holds a real maximum.
        z = tl.where(col_ok[None, :], z, -1.0e30)
        new_max = tl.maximum(run_max, tl.max(z, axis=1))
        scale = tl.exp(run_max - new_max)
        shift = z - new_max[:, None]
        e = tl.exp(shift)
        # Old terms: exp(z - m_old)(z - m_old) -> scale * exp(z - m_old)((z - m_old) + (m_old - m_new)).
        moved = sum_exp * tl.where(sum_exp > 0, run_max - new_max, 0.0)  # no 0 * -inf on the first tile
        sum_exp_shift = scale * (sum_exp_shift + moved) + tl.sum(e * shift, axis=1)
        sum_exp = scale * sum_exp + tl.sum(e, axis=1)
        target_logit += tl.sum(tl.where(cols[None, :] == targets[:, None], z, 0.0), axis=1)
        run_max = new_max
    out = stats_ptr + split * N + rows  # stats: [4, NUM_SPLITS, N]
    plane = NUM_SPLITS * N
    tl.store(out, run_max, mask=row_ok)
    tl.store(out + plane, sum_exp, mask=row_ok)
    tl.store(out + 2 * plane, sum_exp_shift, mask=row_ok)
    tl.store(out + 3 * plane, target_logit, mask=row_ok)


@triton.jit
def _grad_logits_kernel(
    h_ptr, w_ptr, t_ptr, lse_ptr, entropy_ptr, grad_logprob_ptr, grad_entropy_ptr, out_ptr,
    N, V, v_start, v_count, stride_h, stride_w, stride_out,
    HIDDEN: tl.constexpr, DOT_FP32: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr,
):
    # Grouped order: GROUP token blocks sweep the slice's vocab tiles together (as in
    # Triton's matmul tutorial), so each W tile is read from HBM about once per group.
    pid = tl.program_id(0)
    row_blocks, col_blocks = tl.cdiv(N, BLOCK_N), tl.cdiv(v_count, BLOCK_V)
    first_row_block = (pid // (GROUP * col_blocks)) * GROUP
    group_rows = tl.minimum(row_blocks - first_row_block, GROUP)
    row_block = first_row_block + (pid % (GROUP * col_blocks)) % group_rows
    col_block = (pid % (GROUP * col_blocks)) // group_rows
    rows = row_block * BLOCK_N + tl.arange(0, BLOCK_N)
    local_cols = col_block * BLOCK_V + tl.arange(0, BLOCK_V)
    row_ok, col_ok = rows < N, local_cols < v_count
    cols = v_start + tl.minimum(local_cols, v_count - 1)
    h_offsets = tl.minimum(rows, N - 1).to(tl.int64) * stride_h
    z = _logits_tile(h_ptr, w_ptr, h_offsets, cols.to(tl.int64) * stride_w, HIDDEN, DOT_FP32, BLOCK_N, BLOCK_V, BLOCK_K)
    targets = tl.load(t_ptr + rows, mask=row_ok, other=_IGNORE)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    entropy = tl.load(entropy_ptr + rows, mask=row_ok, other=0.0)
    grad_logprob = tl.load(grad_logprob_ptr + rows, mask=row_ok, other=0.0)  # 0 at IGNORE targets
    grad_entropy = tl.load(grad_entropy_ptr + rows, mask=row_ok, other=0.0)
    logp = z - lse[:, None]
    p = tl.exp(logp)
    grad = -p * (grad_entropy[:, None] * (logp + entropy[:, None]) + grad_logprob[:, None])
    grad += tl.where(cols[None, :] == targets[:, None], grad_logprob[:, None], 0.0)
    out = out_ptr + rows.to(tl.int64)[:, None] * stride_out + local_cols[None, :]
    tl.store(out, grad.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def dot_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype of the dots and of dz: a shared 16-bit dtype, else fp32."""
    if hidden.dtype == weight.dtype and hidden.dtype in (torch.bfloat16, torch.float16):
        return hidden.dtype
    return torch.float32


def _tiles(num_tokens: int, vocab: int, hidden_size: int, dtype: torch.dtype) -> Tiles:
    table = FP32_TILES if dtype == torch.float32 else TENSOR_CORE_TILES

    def size(n: int, block: int, cap: int) -> int:
        return max(16, min(block, cap, triton.next_power_of_2(max(n, 1))))  # tl.dot needs >= 16

    return Tiles(
        size(num_tokens, table.block_n, MAX_BLOCK_N),
        size(vocab, table.block_v, MAX_BLOCK_V),
        size(hidden_size, table.block_k, MAX_BLOCK_K),
        table.num_warps,
        table.num_stages,
    )


def _launch_options(tiles: Tiles, hidden: torch.Tensor, weight: torch.Tensor) -> dict:
    dtype = dot_dtype(hidden, weight)
    interpreted = not isinstance(_forward_kernel, triton.runtime.JITFunction)
    return {
        "HIDDEN": hidden.shape[1],
        "DOT_FP32": dtype == torch.float32 or (interpreted and dtype == torch.bfloat16),
        "BLOCK_N": tiles.block_n, "BLOCK_V": tiles.block_v, "BLOCK_K": tiles.block_k,
        "num_warps": tiles.num_warps, "num_stages": tiles.num_stages,
    }  # fmt: skip


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def num_splits(token_blocks: int, vocab_tiles: int, num_sms: int) -> int:
    """Vocabulary splits: enough programs for ~4 per SM, a power of two up to MAX_SPLITS,
    reduced so that every split's first tile lies inside the vocabulary."""
    splits = min(MAX_SPLITS, triton.next_power_of_2(triton.cdiv(4 * num_sms, token_blocks)), vocab_tiles)
    return triton.cdiv(vocab_tiles, triton.cdiv(vocab_tiles, splits))


def forward_stats_triton(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, splits: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logprob, entropy, lse), each [N] fp32; `splits` overrides `num_splits` (tests)."""
    (num_tokens, hidden_size), vocab = hidden.shape, weight.shape[0]
    if num_tokens == 0:
        return tuple(torch.zeros(0, dtype=torch.float32, device=hidden.device) for _ in range(3))
    tiles = _tiles(num_tokens, vocab, hidden_size, dot_dtype(hidden, weight))
    token_blocks, vocab_tiles = triton.cdiv(num_tokens, tiles.block_n), triton.cdiv(vocab, tiles.block_v)
    splits = splits or num_splits(token_blocks, vocab_tiles, _num_sms(hidden.device))
    tiles_per_split = triton.cdiv(vocab_tiles, splits)
    assert (splits - 1) * tiles_per_split < vocab_tiles, "a split would start past the vocabulary"
    stats = torch.empty(4, splits, num_tokens, dtype=torch.float32, device=hidden.device)
    _forward_kernel[(token_blocks * splits,)](
        hidden, weight, targets, stats, num_tokens, vocab, hidden.stride(0), weight.stride(0),
        NUM_SPLITS=splits, TILES_PER_SPLIT=tiles_per_split, **_launch_options(tiles, hidden, weight),
    )  # fmt: skip
    run_max, sum_exp, sum_exp_shift, target_logit = stats.unbind(0)  # each [splits, N]
    top = run_max.max(0).values
    scale = torch.exp(run_max - top)
    total = (scale * sum_exp).sum(0)
    total_shift = (scale * (sum_exp_shift + sum_exp * (run_max - top))).sum(0)
    lse = top + total.log()
    entropy = total.log() - total_shift / total
    logprob = torch.where(targets != IGNORE, target_logit.sum(0) - lse, 0.0)
    return logprob, entropy, lse


def grad_logits_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
    grad_logprob: torch.Tensor,
    grad_entropy: torch.Tensor,
    columns: slice,
) -> torch.Tensor:
    """dL/dz for vocabulary `columns` of every token, [N, width] in `dot_dtype`; as
    `grad_logits_torch` (whose derivation it follows) with grad_logprob 0 at IGNORE."""
    (num_tokens, hidden_size), vocab = hidden.shape, weight.shape[0]
    start, stop, _ = columns.indices(vocab)
    dtype = dot_dtype(hidden, weight)
    out = torch.empty(num_tokens, stop - start, dtype=dtype, device=hidden.device)
    tiles = _tiles(num_tokens, stop - start, hidden_size, dtype)
    grid = (triton.cdiv(num_tokens, tiles.block_n) * triton.cdiv(stop - start, tiles.block_v),)
    _grad_logits_kernel[grid](
        hidden, weight, targets, lse, entropy, grad_logprob, grad_entropy, out,
        num_tokens, vocab, start, stop - start, hidden.stride(0), weight.stride(0), out.stride(0),
        GROUP=GROUP_N, **_launch_options(tiles, hidden, weight),
    )  # fmt: skip
    return out


def vocab_slices(num_tokens: int, vocab: int, chunk_size: int) -> list[slice]:
    """ceil(N / chunk_size) slices of one width, rounded up to MAX_BLOCK_V: N x width is
    about chunk_size x V (at most N x MAX_BLOCK_V more)."""
    if num_tokens == 0:
        return []
    width = triton.cdiv(triton.cdiv(vocab, triton.cdiv(num_tokens, chunk_size)), MAX_BLOCK_V) * MAX_BLOCK_V
    return [slice(start, min(start + width, vocab)) for start in range(0, vocab, width)]


def matmul_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in fp32, never rounded to a 16-bit dtype: on CUDA cuBLAS writes fp32 from
    16-bit operands (`out_dtype`, torch >= 2.8); elsewhere (the CPU tests) a and b are upcast.
    (A slice's partial grad_hidden rounded to bf16 put the sum 2 bf16 ulps off the reference.)"""
    if a.is_cuda and a.dtype != torch.float32:
        return torch.mm(a, b, out_dtype=torch.float32)
    return a.float() @ b.float()


class TritonLogprobEntropy(torch.autograd.Function):
    """The triton backend; saves what the torch backend saves (inputs, per-token lse and entropy)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
        logprob, entropy, lse = forward_stats_triton(hidden, weight, targets)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.chunk_size = chunk_size
        return logprob, entropy

    @staticmethod
    def backward(ctx, grad_logprob: torch.Tensor, grad_entropy: torch.Tensor):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_logprob = torch.where(targets != IGNORE, grad_logprob.float(), 0.0).contiguous()
        grad_entropy = grad_entropy.float().contiguous()
        dtype = dot_dtype(hidden, weight)
        hidden_mm, weight_mm = hidden.to(dtype), weight.to(dtype)  # copies only for mixed dtypes
        grad_hidden32 = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_weight else None
        for columns in vocab_slices(hidden.shape[0], weight.shape[0], ctx.chunk_size):
            grad = grad_logits_triton(hidden, weight, targets, lse, entropy, grad_logprob, grad_entropy, columns)
            if need_weight:
                torch.mm(grad.T, hidden_mm, out=grad_weight[columns])
            if need_hidden:
                grad_hidden32 += matmul_fp32(grad, weight_mm[columns])
            del grad  # else this slice's dz lives on while the next is computed
        grad_hidden = grad_hidden32.to(hidden.dtype) if need_hidden else None
        grad_weight = grad_weight.to(weight.dtype) if need_weight else None
        return grad_hidden, grad_weight, None, None
