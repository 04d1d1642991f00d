"""Fused chunked logprob and entropy: by hand, against full logits, and Triton against torch.

Covered: values and gradients (hidden and weight) of the chunked torch path against
`naive_logprob_and_entropy` in fp32 for chunk sizes that do and do not divide N, IGNORE
targets, one input without grad, bf16 inputs, that no [N, V] tensor is saved for
backward, and a vocabulary-2 case worked out by hand. The Triton kernels run on CPU
only under TRITON_INTERPRET=1, which must be set before triton is imported, so they run
in a subprocess on tiny shapes with the tile caps lowered to 16 (partial tiles in every
dimension, vocabulary splits and slices), against the full logits in fp32, fp16 and bf16
(where the interpreter dots bf16 tiles in fp32: learner/kernels/fused_logprob_triton.py),
with labels at both ends of the vocabulary, IGNORE targets, a frozen head, mixed dtypes
and no tokens. Run it with another triton first on PYTHONPATH to check that version.
The split and slice sizes are checked on their own; on a GPU, the compiled kernels.
"""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from learner.fused_logprob import logprob_and_entropy, naive_logprob_and_entropy
from learner.packing import IGNORE

REPO = Path(__file__).resolve().parents[2]


def case(seed: int = 0, num_tokens: int = 37, hidden_size: int = 24, vocab: int = 50, dtype=torch.float32):
    """Random hidden, head and targets (every third one IGNORE), and random output weights."""
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(num_tokens, hidden_size, generator=g) * 0.7).to(dtype)
    weight = torch.randn(vocab, hidden_size, generator=g).to(dtype)
    targets = torch.randint(0, vocab, (num_tokens,), generator=g)
    targets[::3] = IGNORE
    return hidden, weight, targets, torch.randn(num_tokens, generator=g), torch.randn(num_tokens, generator=g)


def run(fn, hidden, weight, targets, a, b, **kwargs):
    """(logprob, entropy, grad_hidden, grad_weight) of the loss sum(a * logprob + b * entropy)."""
    hidden, weight = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logprob, entropy = fn(hidden, weight, targets, **kwargs)
    ((a * logprob).sum() + (b * entropy).sum()).backward()
    return logprob, entropy, hidden.grad, weight.grad


@pytest.mark.parametrize("chunk_size", [1, 8, 37, 1024])
def test_chunked_equals_naive_values_and_gradients(chunk_size):
    inputs = case()
    got = run(logprob_and_entropy, *inputs, chunk_size=chunk_size)
    expected = run(naive_logprob_and_entropy, *inputs)
    for name, g, e in zip(("logprob", "entropy", "grad_hidden", "grad_weight"), got, expected):
        torch.testing.assert_close(g, e, atol=2e-5, rtol=1e-5, msg=name)
    assert got[0].dtype == got[1].dtype == torch.float32


def test_by_hand_with_vocab_two():
    # H = 1, W = [[0], [ln 3]], so a token with hidden h has logits z = [0, h ln 3].
    # Token A (h = 1, target 1): p = [1/4, 3/4], lse = ln 4, logprob = ln(3/4),
    #   entropy = ln 4 - (3/4) ln 3  (H = lse - sum p z).
    #   d logprob/dz = [0, 1] - p = [-1/4, 1/4];
    #   dH/dz_j = -p_j (log p_j + H): log p + H = [-(3/4) ln 3, (1/4) ln 3] -> [3/16 ln 3, -3/16 ln 3].
    # Token B (h = 2, IGNORE): p = [1/10, 9/10], lse = ln 10, logprob 0 (no gradient),
    #   entropy = ln 10 - (9/5) ln 3; log p + H = [-(9/5) ln 3, (1/5) ln 3] -> dH/dz = [9/50, -9/50] ln 3.
    # Loss = sum(logprob) + sum(entropy). dz/dh = [0, ln 3] and dz_j/dW_j = h, so
    #   grad_h = [ln 3 (1/4 - 3/16 ln 3), -(9/50) ln^2 3],
    #   grad_W = [dz0_A + 2 dz0_B, dz1_A + 2 dz1_B] = [-1/4 + (3/16 + 9/25) ln 3, 1/4 - (3/16 + 9/25) ln 3].
    ln3 = math.log(3)
    hidden = torch.tensor([[1.0], [2.0]])
    weight = torch.tensor([[0.0], [ln3]])
    targets = torch.tensor([1, IGNORE])
    ones = torch.ones(2)
    c = 3 / 16 + 9 / 25
    expected = (
        torch.tensor([math.log(3 / 4), 0.0]),
        torch.tensor([math.log(4) - 0.75 * ln3, math.log(10) - 1.8 * ln3]),
        torch.tensor([[ln3 * (0.25 - 3 / 16 * ln3)], [-9 / 50 * ln3**2]]),
        torch.tensor([[-0.25 + c * ln3], [0.25 - c * ln3]]),
    )
    for fn, kwargs in ((logprob_and_entropy, {"chunk_size": 1}), (naive_logprob_and_entropy, {})):
        got = run(fn, hidden, weight, targets, ones, ones, **kwargs)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-6)


def test_ignored_targets_give_zero_logprob_and_no_logprob_gradient_but_an_entropy():
    hidden, weight, targets, _, _ = case()
    ignored = targets == IGNORE
    hidden = hidden.requires_grad_()
    logprob, entropy = logprob_and_entropy(hidden, weight, targets, chunk_size=8)
    assert torch.all(logprob[ignored] == 0) and torch.all(logprob[~ignored] < 0)
    assert torch.all(entropy[ignored] > 0)
    (grad,) = torch.autograd.grad(logprob.sum(), hidden)
    assert torch.all(grad[ignored] == 0) and torch.all(grad[~ignored].abs().sum(-1) > 0)


def test_only_the_inputs_that_need_it_get_a_gradient():
    hidden, weight, targets, a, b = case()
    frozen_head = weight.clone()
    hidden = hidden.clone().requires_grad_()
    logprob, entropy = logprob_and_entropy(hidden, frozen_head, targets, chunk_size=8)
    ((a * logprob).sum() + (b * entropy).sum()).backward()
    expected = run(naive_logprob_and_entropy, *case())[2]
    torch.testing.assert_close(hidden.grad, expected, atol=2e-5, rtol=1e-5)
    assert frozen_head.grad is None


def test_bf16_inputs_compute_in_fp32_and_return_grads_in_bf16():
    inputs = case(dtype=torch.bfloat16)
    got = run(logprob_and_entropy, *inputs, chunk_size=8)
    expected = run(naive_logprob_and_entropy, *inputs)
    assert got[0].dtype == torch.float32 and got[2].dtype == got[3].dtype == torch.bfloat16
    torch.testing.assert_close(got[0], expected[0], atol=2e-5, rtol=1e-5)  # same fp32 math on bf16 values
    torch.testing.assert_close(got[3], expected[3], atol=1e-2, rtol=1e-2)  # both rounded to bf16


def saved_numels(fn, *args, **kwargs) -> list[int]:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return sizes


def test_no_tensor_of_size_n_by_v_is_saved_for_backward():
    hidden, weight, targets, _, _ = case(num_tokens=64, hidden_size=8, vocab=200)
    hidden, weight = hidden.requires_grad_(), weight.requires_grad_()
    full = hidden.shape[0] * weight.shape[0]
    assert max(saved_numels(logprob_and_entropy, hidden, weight, targets, chunk_size=16)) < full
    assert max(saved_numels(naive_logprob_and_entropy, hidden, weight, targets)) >= full  # the check can fail


def test_bad_arguments_are_rejected():
    hidden, weight, targets, _, _ = case()
    with pytest.raises(ValueError, match="unknown logprob backend 'cuda'"):
        logprob_and_entropy(hidden, weight, targets, backend="cuda")
    with pytest.raises(ValueError, match="hidden \\[N, H\\] and weight \\[V, H\\]"):
        logprob_and_entropy(hidden, weight[:, :5], targets)
    with pytest.raises(ValueError, match="targets must be int64"):
        logprob_and_entropy(hidden, weight, targets.int())
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        logprob_and_entropy(hidden, weight, targets, chunk_size=0)


TRITON_SCRIPT = textwrap.dedent(
    """
    import torch
    import learner.kernels.fused_logprob_triton as kernels
    from learner.fused_logprob import chunk_stats_torch, logprob_and_entropy, naive_logprob_and_entropy
    from tests.learner.test_fused_logprob import case, run
    kernels.MAX_BLOCK_N = kernels.MAX_BLOCK_V = kernels.MAX_BLOCK_K = 16

    def check(got, expected, tols, what):
        for name, g, e, tol in zip(("logprob", "entropy", "grad_hidden", "grad_weight"), got, expected, tols):
            assert g.dtype == e.dtype, (what, name, g.dtype, e.dtype)
            torch.testing.assert_close(g.float(), e.float(), atol=tol, rtol=tol, msg=f"{what} {name}")

    def edge_case(dtype=torch.float32, **kwargs):
        hidden, weight, targets, a, b = case(seed=1, vocab=100, dtype=dtype, **kwargs)
        targets[1], targets[2], targets[-2] = 0, 99, 99  # the ends of the vocabulary, also in the last token block
        return hidden, weight, targets, a, b

    # 37 tokens, vocab 100, hidden 24 in tiles of 16: 3 token blocks, 7 vocab tiles in 2 splits
    # (the second ends on a tile wholly past the vocabulary), 2 hidden slices, each ending in a
    # partial one; backward in 2 vocab slices (64 and 36 columns) for chunk_size 20.
    # Statistics match the full fp32 logits to fp32 rounding for every dtype (16-bit products
    # are exact in fp32); 16-bit gradients are within a rounding or two of that dtype.
    for dtype, grad_tol in ((torch.float32, 2e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)):
        inputs = edge_case(dtype)
        got = run(logprob_and_entropy, *inputs, chunk_size=20, backend="triton")
        check(got, run(naive_logprob_and_entropy, *inputs), (2e-5, 2e-5, grad_tol, grad_tol), dtype)

    # The vocabulary in 1 to 7 splits against the chunked torch statistics (lse included).
    hidden, weight, targets, _, _ = edge_case()
    expected = chunk_stats_torch(hidden, weight, targets)
    for splits in (1, 3, 7):
        for g, e in zip(kernels.forward_stats_triton(hidden, weight, targets, splits=splits), expected):
            torch.testing.assert_close(g, e, atol=2e-5, rtol=2e-5, msg=f"{splits} splits")

    # Large logits (|z| up to ~100) exercise the online rescaling; one vocab slice.
    hidden, weight, targets, a, b = edge_case()
    got = run(logprob_and_entropy, hidden * 8, weight, targets, a, b, backend="triton")
    check(got, run(naive_logprob_and_entropy, hidden * 8, weight, targets, a, b), (1e-4,) * 4, "large logits")

    # An fp32 hidden with a bf16 head (dotted in fp32), and a frozen head (no grad_W).
    hidden, weight, targets, a, b = edge_case()
    inputs = (hidden, weight.bfloat16(), targets, a, b)
    got = run(logprob_and_entropy, *inputs, chunk_size=20, backend="triton")
    check(got, run(naive_logprob_and_entropy, *inputs), (2e-5, 2e-5, 2e-5, 2e-2), "mixed dtypes")
    frozen = hidden.clone().requires_grad_()
    logprob, entropy = logprob_and_entropy(frozen, weight, targets, chunk_size=20, backend="triton")
    ((a * logprob).sum() + (b * entropy).sum()).backward()
    torch.testing.assert_close(frozen.grad, run(naive_logprob_and_entropy, hidden, weight, targets, a, b)[2])

    # No tokens: empty outputs, a zero grad_W.
    hidden, weight, targets, a, b = (x[:0] if x.shape[0] == 37 else x for x in edge_case())
    got = run(logprob_and_entropy, hidden, weight, targets, a, b, backend="triton")
    assert got[0].shape == got[1].shape == (0,) and got[2].shape == (0, 24) and not got[3].any()
    print("ok")
    """
)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install triton)")
def test_triton_kernels_match_the_full_logits_under_the_interpreter():
    # PYTHONPATH keeps what it had after the repository (e.g. another triton version to test).
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": python_path}
    result = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_vocab_slices_cover_the_vocabulary_with_about_a_chunk_of_gradient_each():
    pytest.importorskip("triton", reason="triton is not installed (pip install triton)")
    from learner.kernels.fused_logprob_triton import vocab_slices

    # 16,384 tokens in chunks of 1,024: 16 slices of ceil(151,936 / 16) = 9,496 -> 9,600 columns.
    slices = vocab_slices(16384, 151936, 1024)
    assert [s.stop - s.start for s in slices] == [9600] * 15 + [151936 - 15 * 9600]
    assert slices[0].start == 0 and all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert vocab_slices(500, 151936, 1024) == [slice(0, 151936)]  # fewer tokens than a chunk: one slice
    assert vocab_slices(0, 100, 1024) == []


def test_vocab_splits_fill_the_gpu_and_start_inside_the_vocabulary():
    pytest.importorskip("triton", reason="triton is not installed (pip install triton)")
    from learner.kernels.fused_logprob_triton import num_splits

    assert num_splits(token_blocks=128, vocab_tiles=1187, num_sms=132) == 8  # 4 x 132 / 128 -> 5 -> 8
    # Capped at 64 splits: ceil(1187 / 64) = 19 tiles each, which ceil(1187 / 19) = 63 splits cover.
    assert num_splits(token_blocks=2, vocab_tiles=1187, num_sms=132) == 63
    assert num_splits(token_blocks=1000, vocab_tiles=1187, num_sms=132) == 1
    # 5 tiles in 4 splits of 2 would leave the 4th none (it would start at tile 6): 3 splits.
    assert num_splits(token_blocks=1, vocab_tiles=5, num_sms=1) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compiled Triton, bf16 native dots)")
def test_triton_kernels_match_the_full_logits_on_a_gpu():
    # (tokens, hidden, vocab): partial tiles everywhere; then H a multiple of BLOCK_K (unmasked
    # loads), several vocab slices (chunk_size 256) and labels at both ends of the vocabulary.
    # bf16: gradients reach ~13 here and dz is rounded to bf16 before the GEMMs (as autograd's
    # bf16 matmul backward rounds its input), which leaves a few 1e-2 on sums with cancellation
    # (a torch emulation of that rounding stays under 0.45 of this tolerance, 0.88 of 2e-2).
    for num_tokens, hidden_size, vocab in ((300, 96, 1000), (1100, 256, 5003)):
        for dtype, grad_tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
            hidden, weight, targets, a, b = (x.cuda() for x in case(0, num_tokens, hidden_size, vocab, dtype))
            targets[1], targets[2] = 0, vocab - 1
            got = run(logprob_and_entropy, hidden, weight, targets, a, b, chunk_size=256, backend="triton")
            expected = run(naive_logprob_and_entropy, hidden, weight, targets, a, b)
            tols = (1e-4, 1e-4, grad_tol, grad_tol)
            for name, g, e, tol in zip(("logprob", "entropy", "grad_hidden", "grad_weight"), got, expected, tols):
                torch.testing.assert_close(g.float(), e.float(), atol=tol, rtol=tol, msg=f"{dtype} {vocab} {name}")
