"""Paged decode attention: the torch path against dense attention, Triton against torch.

Torch path: 4 query heads over 2 KV heads (GQA), head_dim 8, blocks of 4 slots, block
tables that are out of order, padded with zeros, and context lengths that end mid-block.

Triton kernel, on CPU: its launch plan (split-K choice, tile padding) as plain Python;
the kernel itself under TRITON_INTERPRET=1, which must be set before triton is imported,
so it runs in a subprocess (which keeps PYTHONPATH, so another triton can be put first:
PYTHONPATH=/path/to/triton-3.6 pytest ...). `ragged_case` poisons every slot a kernel
must not read. Cases: MHA (broadcast products), GQA 6:1, 4:1, 8:1 (tensor-core dot),
head_dim 24 and 8 (masked), bf16, with and without split-K, more partitions than a short
sequence has blocks, context lengths 1, a whole number of blocks, mid-block.
On CUDA (skipped elsewhere): real head shapes in bf16 and fp32, and replay in a CUDA
graph with new block tables and lengths. The decode benchmark's byte count and its
exit code without CUDA are checked here too.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rollout.kernels.paged_decode import DecodeBatch, Workspace, decode_function, paged_decode_torch
from rollout.kernels.paged_decode_plan import MAX_SPLITS, choose_num_splits, plan_decode

REPO = Path(__file__).resolve().parents[2]


def case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    num_blocks, block_size, kv_heads, head_dim, heads = 12, 4, 2, 8, 4
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    tables = torch.tensor([[3, 7, 1], [5, 0, 0], [11, 2, 9]])
    lens = torch.tensor([10, 3, 12])  # mid-block, inside one block, exactly three blocks
    q = torch.randn(3, heads, head_dim, generator=g)
    return q, k_cache, v_cache, DecodeBatch(tables, lens)


def dense_reference(q, k_cache, v_cache, batch: DecodeBatch, scale: float) -> torch.Tensor:
    """Gather each sequence's keys one position at a time and attend with an explicit softmax."""
    out = torch.empty_like(q)
    block_size, kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // kv_heads
    for seq, (table, length) in enumerate(zip(batch.block_tables.tolist(), batch.context_lens.tolist())):
        slots = [(table[p // block_size], p % block_size) for p in range(length)]
        keys = torch.stack([k_cache[b, s] for b, s in slots])  # [length, kv_heads, head_dim]
        values = torch.stack([v_cache[b, s] for b, s in slots])
        for head in range(q.shape[1]):
            scores = keys[:, head // group] @ q[seq, head] * scale
            out[seq, head] = torch.softmax(scores, dim=0) @ values[:, head // group]
    return out


def test_torch_path_matches_dense_attention():
    q, k_cache, v_cache, batch = case()
    expected = dense_reference(q, k_cache, v_cache, batch, scale=0.3)
    torch.testing.assert_close(paged_decode_torch(q, k_cache, v_cache, batch, 0.3), expected, atol=1e-5, rtol=1e-5)


def test_padding_and_stale_slots_are_ignored():
    q, k_cache, v_cache, batch = case()
    before = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    # Overwrite everything no sequence may see: block 0 (only padding) and the slots of
    # sequence 0's last block past its length (positions 10, 11 -> block 1, slots 2, 3).
    k_cache[0], v_cache[0] = 1e4, -1e4
    k_cache[1, 2:], v_cache[1, 2:] = 1e4, -1e4
    torch.testing.assert_close(paged_decode_torch(q, k_cache, v_cache, batch, 0.3), before)


def test_unknown_kernel_is_rejected():
    with pytest.raises(ValueError, match="unknown decode kernel 'cuda'"):
        decode_function("cuda")


def test_split_k_only_when_the_batch_leaves_sms_idle():
    # 256 sequences x 16 KV heads = 4096 programs >= 4 x 132: one partition.
    assert choose_num_splits(4096, 8192, 132) == 1
    # Llama-3-8B, 8 sequences x 8 KV heads at 8k: ceil(528 / 64) = 9 partitions of ~910 keys.
    assert choose_num_splits(64, 8192, 132) == 9
    # The same batch at 512 keys: 512 // 256 = 2 partitions, not 9 of 57 keys.
    assert choose_num_splits(64, 512, 132) == 2
    assert choose_num_splits(64, 255, 132) == 1
    # One sequence, one KV head, a huge context: capped.
    assert choose_num_splits(1, 1 << 20, 132) == MAX_SPLITS


def test_plan_pads_the_group_for_tensor_cores():
    mha = plan_decode(256, 16, 16, 64, 16, 128, 132)
    assert (mha.use_dot, mha.group_rows, mha.block_d, mha.num_splits) == (False, 1, 64, 1)
    qwen = plan_decode(32, 12, 2, 128, 16, 256, 132)  # 64 programs: ceil(528 / 64) = 9
    assert (qwen.use_dot, qwen.group_rows, qwen.block_d, qwen.num_splits) == (True, 16, 128, 9)
    assert qwen.pages_per_step * 16 == 32  # the table's keys a step for grouped heads of 128
    odd = plan_decode(3, 6, 1, 24, 4, 5, 132)  # a dot needs 16 keys a step: 4 blocks of 4
    assert (odd.group_rows, odd.block_d, odd.pages_per_step * 4 >= 16) == (16, 32, True)
    with pytest.raises(ValueError, match="power-of-two block_size"):
        plan_decode(1, 4, 2, 64, 12, 4, 132)
    with pytest.raises(ValueError, match="6 query heads do not divide into 4 KV heads"):
        plan_decode(1, 6, 4, 64, 16, 4, 132)
    with pytest.raises(ValueError, match="head_dim up to 256, not 320"):
        plan_decode(1, 4, 4, 320, 16, 4, 132)
    with pytest.raises(ValueError, match="num_splits must be in 1 .. 64, not 0"):
        plan_decode(1, 4, 4, 64, 16, 4, 132, num_splits=0)


def ragged_case(heads: int, kv_heads: int, head_dim: int, block_size: int, lens: list[int], dtype=torch.float32, seed: int = 0):
    """Sequences of `lens` keys in shuffled blocks, tables padded to the longest with
    block 0, which no sequence owns and which holds huge values, as do the slots past
    each sequence's length: a kernel that reads what it must not changes the result."""
    g = torch.Generator().manual_seed(seed)
    pages = [-(-n // block_size) for n in lens]
    num_blocks = 1 + sum(pages)
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    owned = (torch.randperm(num_blocks - 1, generator=g) + 1).tolist()
    tables = torch.zeros(len(lens), max(pages) + 1, dtype=torch.long)
    for seq, (n, p) in enumerate(zip(lens, pages)):
        tables[seq, :p] = torch.tensor(owned[:p])
        owned = owned[p:]
        k_cache[tables[seq, p - 1], n - (p - 1) * block_size :] = 1e4
        v_cache[tables[seq, p - 1], n - (p - 1) * block_size :] = -1e4
    k_cache[0], v_cache[0] = 1e4, -1e4
    # q as the engine makes it: a view into a wider projection (strided heads).
    q = torch.randn(len(lens), heads, head_dim + 8, generator=g)[:, :, :head_dim]
    return q.to(dtype), k_cache.to(dtype), v_cache.to(dtype), DecodeBatch(tables, torch.tensor(lens))


def test_ragged_case_hides_its_stale_slots():
    """The torch path ignores the huge stale values (so the Triton checks against it can fail)."""
    q, k_cache, v_cache, batch = ragged_case(4, 2, 8, 4, [1, 8, 6])
    out = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    torch.testing.assert_close(out, dense_reference(q, k_cache, v_cache, batch, 0.3), atol=1e-5, rtol=1e-5)
    assert out.abs().max() < 10


# (heads, kv_heads, head_dim, block_size, dtype, num_splits: None = the plan's choice)
TRITON_CASES = [
    (4, 4, 16, 4, "float32", None),  # MHA: broadcast products
    (4, 4, 16, 4, "float32", 3),
    (6, 1, 24, 8, "float32", None),  # GQA 6:1, head_dim not a power of two: dot, masked dims
    (6, 1, 24, 8, "float32", 2),
    (8, 2, 32, 4, "float32", None),  # GQA 4:1 over two KV heads
    (8, 2, 32, 4, "float32", 5),  # more partitions than short sequences have blocks
    (16, 2, 8, 4, "float32", 2),  # group 8, head_dim 8 padded to the dot's 16
    (4, 2, 16, 16, "bfloat16", 2),
    (2, 2, 16, 8, "bfloat16", None),
]
LENS = [1, 16, 13, 37]  # one key, exactly whole blocks, mid-block, several steps

TRITON_SCRIPT = textwrap.dedent(
    f"""
    import torch, triton
    from tests.rollout.test_paged_decode_kernel import ragged_case
    from rollout.kernels.paged_decode import paged_decode_torch
    from rollout.kernels.paged_decode_triton import paged_decode_triton, plan_for
    for heads, kv_heads, head_dim, block_size, dtype, splits in {TRITON_CASES!r}:
        dtype = getattr(torch, dtype)
        q, k_cache, v_cache, batch = ragged_case(heads, kv_heads, head_dim, block_size, {LENS!r}, dtype)
        assert plan_for(q, k_cache, batch, splits).num_splits == (splits or 1)
        expected = paged_decode_torch(q.float(), k_cache.float(), v_cache.float(), batch, 0.3)
        out = paged_decode_triton(q, k_cache, v_cache, batch, 0.3, num_splits=splits)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol, msg=lambda m: f"{{heads}}:{{kv_heads}}x{{head_dim}} {{dtype}} splits={{splits}}: {{m}}")
    print("ok", triton.__version__)
    """
)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install triton)")
def test_triton_kernel_matches_torch_under_the_interpreter():
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("ok")


def test_workspace_gathers_match_fresh_ones():
    """The torch path gathering into reused buffers, bigger and then smaller than needed."""
    q, k_cache, v_cache, batch = case()
    expected = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    workspace = Workspace()
    small = DecodeBatch(batch.block_tables[1:, :1], torch.tensor([3, 4]), workspace)
    paged_decode_torch(q[1:], k_cache, v_cache, small, 0.3)
    out = paged_decode_torch(q, k_cache, v_cache, DecodeBatch(batch.block_tables, batch.context_lens, workspace), 0.3)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    again = paged_decode_torch(q[1:], k_cache, v_cache, small, 0.3)
    torch.testing.assert_close(again, paged_decode_torch(q[1:], k_cache, v_cache, DecodeBatch(small.block_tables, small.context_lens), 0.3))


def test_decode_bench_counts_the_bytes_attention_must_move():
    from benchmarks.decode_kernel import SHAPES, DecodeShape

    # K and V: 2 x 8 seqs x 8192 keys x 8 heads x 128 = 134,217,728 values; q and out:
    # 2 x 8 x 32 x 128 = 65,536; bf16: x 2 bytes.
    assert DecodeShape(32, 8, 128, batch=8, context=8192).moved_bytes(2) == 268_566_528
    # Every shape streams 256 MiB of K and V: far more than an H100's or H200's L2.
    assert {name: s.batch * s.context * s.kv_heads * s.head_dim * 4 for name, s in SHAPES.items()} == dict.fromkeys(SHAPES, 256 << 20)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gets")
def test_decode_bench_without_cuda_exits_2(capsys):
    from benchmarks.decode_kernel import main

    assert main(["--json"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (on CPU the interpreter test covers the kernel)")


@CUDA
@pytest.mark.parametrize("heads, kv_heads, head_dim", [(16, 16, 64), (12, 2, 128), (32, 8, 128), (14, 2, 96), (8, 1, 256)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_triton_kernel_matches_torch_at_real_shapes(heads, kv_heads, head_dim, dtype):
    from rollout.kernels.paged_decode_triton import paged_decode_triton

    lens = [1, 16, 300, 4095, 2048, 77]
    q, k_cache, v_cache, batch = (t.cuda() if isinstance(t, torch.Tensor) else t for t in ragged_case(heads, kv_heads, head_dim, 16, lens, dtype))
    batch = DecodeBatch(batch.block_tables.cuda(), batch.context_lens.cuda())
    expected = paged_decode_torch(q.float(), k_cache.float(), v_cache.float(), batch, head_dim ** -0.5)
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    for splits in (None, 1, 7):
        out = paged_decode_triton(q, k_cache, v_cache, batch, head_dim ** -0.5, num_splits=splits)
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol, msg=lambda m: f"splits={splits}: {m}")


@CUDA
def test_triton_kernel_replays_in_a_cuda_graph():
    """Captured once, replayed with other block tables and lengths written into the same
    tensors: the launch reads nothing from the host (split-K included)."""
    from rollout.kernels.paged_decode_triton import paged_decode_triton

    q, k_cache, v_cache, batch = ragged_case(12, 2, 128, 16, [3000, 1, 700, 2048], torch.bfloat16)
    q, k_cache, v_cache = q.cuda(), k_cache.cuda(), v_cache.cuda()
    tables, lens = batch.block_tables.cuda(), batch.context_lens.cuda()
    static = DecodeBatch(tables.clone(), lens.clone())
    paged_decode_triton(q, k_cache, v_cache, static, 0.1, num_splits=4)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = paged_decode_triton(q, k_cache, v_cache, static, 0.1, num_splits=4)
    for new_tables, new_lens in ((tables, lens), (tables.roll(1, 0), lens.roll(1, 0).clamp(max=2000))):
        static.block_tables.copy_(new_tables)
        static.context_lens.copy_(new_lens)
        graph.replay()
        expected = paged_decode_torch(q, k_cache, v_cache, DecodeBatch(new_tables, new_lens), 0.1)
        torch.testing.assert_close(out.float(), expected.float(), atol=2e-2, rtol=2e-2)
