"""Per-token logprob and entropy from hidden states and the LM head, without [N, V] logits.

    logprob, entropy = logprob_and_entropy(hidden, weight, targets, chunk_size=1024)

hidden [N, H] (the last hidden states, flattened), weight [V, H] (the LM head, or the tied
embedding), targets [N] int64. Returns two [N] fp32 tensors: log softmax(hidden @ W.T)
at the target, and the entropy of that whole softmax. A target equal to IGNORE (-100,
learner/packing.py) gives logprob 0 and no gradient through its logprob; its entropy is
computed (and differentiated) like any other. Other targets must lie in [0, V).

`backend="torch"` (the reference and the CPU path) loops over chunks of `chunk_size`
tokens: forward computes a chunk's logits (fp32), its logsumexp, target logit and entropy,
and keeps only the inputs and the per-token logsumexp and entropy; backward recomputes
each chunk's logits and accumulates grad_hidden and grad_W from them. So at most one
chunk's [chunk_size, V] logits and one gradient of them are alive at a time, against
several [N, V] tensors for `naive_logprob_and_entropy` (full logits, plain autograd),
which tests and the benches use as the reference. All its arithmetic is fp32 (a bf16
head is upcast once per call: an O(V*H) copy, not O(N*V)).

`backend="triton"` (learner/kernels/fused_logprob_triton.py, GPU; CPU only under
TRITON_INTERPRET=1) computes the forward in [tokens, vocab] tiles with an online
logsumexp and entropy (tensor-core dots for 16-bit inputs, fp32 statistics), and the
backward per vocabulary slice of about chunk_size x V gradient elements: a kernel
recomputes the slice's logits and gradient, two GEMMs turn it into grad_W and
grad_hidden. Its statistics match the torch path to fp32 rounding; with 16-bit inputs
the gradient of the logits is rounded to that dtype before the GEMMs (see the kernel
module). Gradients come back in the inputs' dtypes for both backends. Not covered:
tensor-parallel (vocab-sharded) heads, logit soft-capping or temperature, label smoothing.
"""
from __future__ import annotations

import torch

from learner.packing import IGNORE

BACKENDS = ("torch", "triton")


def naive_logprob_and_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: full [N, V] fp32 logits and plain autograd."""
    logits = hidden.float() @ weight.float().T
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    gathered = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(targets != IGNORE, gathered, torch.zeros_like(gathered)), entropy


def logprob_and_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int = 1024,
    backend: str = "torch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logprob [N], entropy [N]), both fp32, never holding more than a chunk of logits."""
    _check_inputs(hidden, weight, targets, chunk_size)
    if backend == "torch":
        return ChunkedLogprobEntropy.apply(hidden, weight, targets, chunk_size)
    if backend == "triton":
        from learner.kernels.fused_logprob_triton import TritonLogprobEntropy

        return TritonLogprobEntropy.apply(hidden, weight, targets, chunk_size)
    raise ValueError(f"unknown logprob backend {backend!r} (known: {', '.join(BACKENDS)})")


def _check_inputs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden [N, H] and weight [V, H] expected, got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1] or targets.dtype != torch.int64:
        raise ValueError(f"targets must be int64 [{hidden.shape[0]}], got {targets.dtype} {tuple(targets.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def chunk_stats_torch(
    hidden: torch.Tensor, weight32: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logprob, entropy, lse) of one chunk; its [c, V] logits are overwritten in place."""
    logp = hidden.float() @ weight32.T
    lse = torch.logsumexp(logp, dim=-1)
    logp.sub_(lse[:, None])
    entropy = -logp.exp().mul_(logp).sum(-1)  # in place: one [c, V] buffer besides logp
    gathered = logp.gather(-1, targets.clamp(min=0)[:, None]).squeeze(-1)
    logprob = torch.where(targets != IGNORE, gathered, torch.zeros_like(gathered))
    return logprob, entropy, lse


def grad_logits_torch(
    hidden: torch.Tensor,
    weight32: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
    grad_logprob: torch.Tensor,
    grad_entropy: torch.Tensor,
) -> torch.Tensor:
    """d(loss)/d(logits) of one chunk, [c, V] fp32, from recomputed logits.

    With z the logits, lse = logsumexp(z), p = softmax(z), log p = z - lse, t the target:
      logprob = z_t - lse,     d logprob / d z_j = [j = t] - p_j    (d lse / d z_j = p_j).
      entropy H = -sum_i p_i log p_i = lse - sum_i p_i z_i. With d p_i / d z_j = p_i([i=j] - p_j),
        d(sum_i p_i z_i)/d z_j = p_j + sum_i z_i p_i([i=j] - p_j) = p_j + p_j (z_j - E_p[z]),
        so dH/dz_j = p_j - p_j - p_j (z_j - E_p[z]) = -p_j (z_j - E_p[z]),
        and E_p[z] = lse - H, so dH/dz_j = -p_j (log p_j + H).
    grad_logprob is 0 where the target is IGNORE (the caller masks it), so the one-hot
    term may use any in-range index there.
    """
    grad = hidden.float() @ weight32.T
    grad.sub_(lse[:, None])  # log p
    p = grad.exp()
    grad.add_(entropy[:, None]).mul_(p).mul_(-grad_entropy[:, None])  # -g_H p (log p + H)
    grad.sub_(p.mul_(grad_logprob[:, None]))  # - g_lp p
    grad.scatter_add_(1, targets.clamp(min=0)[:, None], grad_logprob[:, None])  # + g_lp [j = t]
    return grad


def backward_by_chunks(
    ctx: torch.autograd.function.FunctionCtx, grad_logprob: torch.Tensor, grad_entropy: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(grad_hidden, grad_weight) from the tensors the forward saved, one chunk at a time:
    each chunk's [c, V] gradient of the logits (`grad_logits_torch`), then two matmuls."""
    hidden, weight, targets, lse, entropy = ctx.saved_tensors
    need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    weight32 = weight.float()
    grad_logprob = torch.where(targets != IGNORE, grad_logprob.float(), torch.zeros_like(lse))
    grad_entropy = grad_entropy.float()
    grad_hidden = torch.empty_like(hidden) if need_hidden else None
    grad_weight32 = torch.zeros_like(weight32) if need_weight else None
    for start in range(0, hidden.shape[0], ctx.chunk_size):
        rows = slice(start, start + ctx.chunk_size)
        grad = grad_logits_torch(
            hidden[rows], weight32, targets[rows], lse[rows], entropy[rows], grad_logprob[rows], grad_entropy[rows]
        )
        if need_hidden:
            grad_hidden[rows] = grad @ weight32
        if need_weight:
            grad_weight32.addmm_(grad.T, hidden[rows].float())
        del grad  # else the last chunk's [c, V] gradient lives on while the next is computed
    grad_weight = grad_weight32.to(weight.dtype) if need_weight else None
    return grad_hidden, grad_weight


class ChunkedLogprobEntropy(torch.autograd.Function):
    """The torch backend; saves hidden, weight, targets and per-token lse and entropy."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        weight32 = weight.float()
        parts = [
            chunk_stats_torch(hidden[start : start + chunk_size], weight32, targets[start : start + chunk_size])
            for start in range(0, hidden.shape[0], chunk_size)
        ]
        logprob, entropy, lse = (torch.cat(column) for column in zip(*parts)) if parts else _empty(3, hidden)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.chunk_size = chunk_size
        return logprob, entropy

    @staticmethod
    def backward(ctx, grad_logprob: torch.Tensor, grad_entropy: torch.Tensor):
        grad_hidden, grad_weight = backward_by_chunks(ctx, grad_logprob, grad_entropy)
        return grad_hidden, grad_weight, None, None


def _empty(count: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(0, dtype=torch.float32, device=like.device) for _ in range(count))
