"""The CPU kernels (C, rollout/kernels/cpu) against their torch references.

Attention: the kernel tests' tiny case (head_dim 8) takes the kernel's scalar path; head
sizes that are multiples of 16 take its vector path, with 1, 2 and 3 query heads per KV
head and context lengths that end mid-block. Both call forms are checked: the eager one
(new K/V already in the cache) against `paged_decode_torch`, the compiled step's op (new
K/V as arguments) against `paged_decode_inline`. The elementwise kernels against
rollout/paged/model.py's functions, on widths with and without a partial vector. Then
the build (a failure names the compiler and its error; a built library is reused) and
what happens where the kernels cannot be built: `auto` warns and takes the torch path,
`cpu` by name is refused.
"""
from __future__ import annotations

import math

import pytest
import torch

import torch.nn.functional as F
from transformers import LlamaConfig

from rollout.errors import EngineConfigError
from rollout.kernels.cpu import attention as cpu_kernel
from rollout.kernels.cpu import build
from rollout.kernels.cpu.elementwise import add_rms_norm, rope_write, silu_mul
from rollout.kernels.cpu.sampling import sample_rows
from rollout.kernels.paged_decode import DecodeBatch, choose_kernel, paged_decode_torch
from rollout.kernels.paged_decode_inline import paged_decode_inline
from rollout.paged.model import Rope, apply_rope, rms_norm
from tests.rollout.test_paged_decode_kernel import case, dense_reference

if build.available() is not None:
    pytest.skip(f"the CPU kernels cannot be built here: {build.available()}", allow_module_level=True)


def wide_case(head_dim: int, heads: int, kv_heads: int, seed: int = 0, block_size: int = 16):
    """64 slots per sequence in blocks out of order; lengths from one key to all 64."""
    g = torch.Generator().manual_seed(seed)
    blocks_per_seq = 64 // block_size
    num_blocks = 6 * blocks_per_seq
    k_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    lens = torch.tensor([1, 16, 17, 50, 64])
    tables = torch.randperm(num_blocks, generator=g)[: 5 * blocks_per_seq].view(5, blocks_per_seq)
    q = torch.randn(5, heads, head_dim, generator=g)
    return q, k_cache, v_cache, DecodeBatch(tables, lens)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scalar_path_matches_the_torch_path(seed):
    q, k_cache, v_cache, batch = case(seed)
    expected = paged_decode_torch(q, k_cache, v_cache, batch, 0.3)
    torch.testing.assert_close(cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, batch, 0.3), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("head_dim", "heads", "kv_heads", "block_size"),
    [(32, 4, 2, 16), (64, 6, 2, 16), (128, 2, 2, 16), (48, 3, 1, 16), (256, 8, 2, 16), (32, 4, 2, 8), (32, 4, 2, 32), (40, 2, 1, 8)],
)
def test_vector_path_matches_dense_attention(head_dim, heads, kv_heads, block_size):
    """(head_dim 40 is not a multiple of 16: the scalar path, on these lengths too.)"""
    q, k_cache, v_cache, batch = wide_case(head_dim, heads, kv_heads, block_size=block_size)
    expected = dense_reference(q, k_cache, v_cache, batch, head_dim**-0.5)
    out = cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, batch, head_dim**-0.5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_dim", [8, 32])
def test_padding_and_stale_slots_are_ignored(head_dim):
    q, k_cache, v_cache, batch = case() if head_dim == 8 else wide_case(head_dim, 4, 2)
    before = cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, batch, 0.3)
    seen = torch.zeros(k_cache.shape[:2], dtype=torch.bool)
    block_size = k_cache.shape[1]
    for table, length in zip(batch.block_tables.tolist(), batch.context_lens.tolist()):
        for position in range(length):
            seen[table[position // block_size], position % block_size] = True
    k_cache[~seen], v_cache[~seen] = 1e4, -1e4
    torch.testing.assert_close(cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, batch, 0.3), before)


def test_far_apart_scores_give_the_top_key_all_the_weight():
    """Scores 100 apart: exp of the difference is 0, not a NaN or an overflow."""
    q, k_cache, v_cache, batch = wide_case(32, 4, 2)
    q = q * 200
    expected = dense_reference(q, k_cache, v_cache, batch, 1.0)
    torch.testing.assert_close(cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, batch, 1.0), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_dim", [8, 32])
def test_op_with_new_keys_matches_the_inline_attention(head_dim):
    q, k_cache, v_cache, batch = case() if head_dim == 8 else wide_case(head_dim, 4, 2)
    num_seqs, kv_heads = q.shape[0], k_cache.shape[2]
    g = torch.Generator().manual_seed(5)
    k_new, v_new = torch.randn(num_seqs, kv_heads, head_dim, generator=g), torch.randn(num_seqs, kv_heads, head_dim, generator=g)
    num_cached = batch.context_lens - 1
    num_cached[0] = 0  # a row that sees only its new key
    visible = torch.ones(num_seqs, dtype=torch.bool)
    visible[1] = False  # a row whose new key is already cached
    args = (q, k_new, v_new, k_cache, v_cache, batch.block_tables, num_cached, visible, 0.3)
    expected = paged_decode_inline(*args)
    torch.testing.assert_close(cpu_kernel.paged_decode_cpu_op(*args), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.ops.treadle.paged_decode_cpu(*args), expected, atol=1e-5, rtol=1e-5)


def test_a_row_with_no_key_gets_zeros():
    q, k_cache, v_cache, batch = wide_case(32, 4, 2)
    out = cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, DecodeBatch(batch.block_tables, torch.tensor([0, 3, 0, 1, 2])), 0.3)
    assert out[0].abs().sum() == 0 and out[2].abs().sum() == 0 and out[1].abs().sum() > 0


def test_arguments_the_kernel_would_overrun_with_are_refused():
    q, k_cache, v_cache, batch = wide_case(32, 4, 2)
    with pytest.raises(ValueError, match="num_cached is negative or beyond its block table"):
        cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, DecodeBatch(batch.block_tables[:, :1], batch.context_lens), 0.3)
    with pytest.raises(ValueError, match="a block id is outside the cache"):
        cpu_kernel.paged_decode_cpu(q, k_cache, v_cache, DecodeBatch(batch.block_tables + 100, batch.context_lens), 0.3)
    with pytest.raises(ValueError, match="do not fit the cache's 2 KV heads of 32"):
        cpu_kernel.paged_decode_cpu(q[:, :3], k_cache, v_cache, batch, 0.3)
    with pytest.raises(ValueError, match="new_visible must be a bool tensor"):
        cpu_kernel.attend(q, k_cache[0, :5], v_cache[0, :5], k_cache, v_cache, batch.block_tables, batch.context_lens, None, 0.3)
    rope = Rope(LlamaConfig(hidden_size=128, num_attention_heads=4), 32, 8, torch.float32, "cpu")
    qkv = torch.randn(2, 8 * 32)
    with pytest.raises(ValueError, match="a position is outside the RoPE tables \\(0 .. 7\\)"):
        rope_write(qkv, torch.tensor([3, 8]), rope.cos, rope.signed_sin, k_cache, v_cache, torch.tensor([0, 1]), 4)
    with pytest.raises(ValueError, match="a slot is outside the cache"):
        rope_write(qkv, torch.tensor([3, 4]), rope.cos, rope.signed_sin, k_cache, v_cache, torch.tensor([0, 10_000]), 4)


def test_other_dtypes_are_refused_by_name():
    q, k_cache, v_cache, batch = wide_case(32, 4, 2)
    with pytest.raises(ValueError, match="CPU kernel: k_cache must be a float32 CPU tensor, got torch.bfloat16"):
        cpu_kernel.paged_decode_cpu(q, k_cache.bfloat16(), v_cache, batch, 0.3)



# 600 rows: enough to split over OpenMP threads (the kernels do from 65,536 floats).
@pytest.mark.parametrize(("rows", "dim"), [(5, 128), (5, 40), (600, 128)])
@pytest.mark.parametrize("with_residual", [True, False])
def test_add_rms_norm_matches_the_model(rows, dim, with_residual):
    g = torch.Generator().manual_seed(dim)
    h, delta, weight = torch.randn(rows, dim, generator=g), torch.randn(rows, dim, generator=g), torch.randn(dim, generator=g)
    expected_h = h + delta if with_residual else h.clone()
    out = torch.empty_like(h)
    add_rms_norm(h, delta if with_residual else None, weight, 1e-6, out=out)
    torch.testing.assert_close(h, expected_h, atol=0, rtol=0)
    torch.testing.assert_close(out, rms_norm(expected_h, weight, 1e-6), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize(("rows", "inter"), [(6, 384), (6, 20), (200, 384)])
def test_silu_mul_matches_torch_over_the_whole_range(rows, inter):
    g = torch.Generator().manual_seed(inter)
    gate_up = torch.randn(rows, 2 * inter, generator=g) * 30  # silu's tails: exp of -90 .. 90
    gate, up = gate_up.chunk(2, dim=-1)
    torch.testing.assert_close(silu_mul(gate_up), F.silu(gate) * up, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_dim", [32, 8])
def test_rope_write_rotates_q_and_writes_the_rotated_k_and_v(head_dim):
    heads, kv_heads, rows = 4, 2, 5
    g = torch.Generator().manual_seed(head_dim)
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * head_dim, generator=g)
    positions = torch.tensor([0, 3, 7, 100, 5])
    rope = Rope(LlamaConfig(hidden_size=heads * head_dim, num_attention_heads=heads), head_dim, 128, torch.float32, "cpu")
    k_cache, v_cache = torch.full((16, 2, kv_heads, head_dim), 7.0), torch.full((16, 2, kv_heads, head_dim), 7.0)
    slots = torch.tensor([3, -1, 0, 31, 8])  # row 1's KV is cached already: written nowhere
    q = rope_write(qkv, positions, rope.cos, rope.signed_sin, k_cache, v_cache, slots, heads)
    cos, sin = rope(positions)
    qk = apply_rope(qkv[:, : (heads + kv_heads) * head_dim].view(rows, -1, head_dim), cos, sin)
    torch.testing.assert_close(q, qk[:, :heads], atol=1e-6, rtol=1e-6)
    keys, values = k_cache.view(-1, kv_heads, head_dim), v_cache.view(-1, kv_heads, head_dim)
    written = [r for r, slot in enumerate(slots.tolist()) if slot >= 0]
    torch.testing.assert_close(keys[slots[written]], qk[written, heads:], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values[slots[written]], qkv[written, (heads + kv_heads) * head_dim :].view(-1, kv_heads, head_dim))
    untouched = torch.ones(32, dtype=torch.bool)
    untouched[slots[written]] = False
    assert (keys[untouched] == 7).all() and (values[untouched] == 7).all()


def test_elementwise_kernels_refuse_strided_rows():
    h = torch.randn(4, 64)[:, :32]
    with pytest.raises(ValueError, match="CPU kernel: h must be contiguous"):
        add_rms_norm(h, None, torch.ones(32), 1e-6, out=torch.empty(4, 32))


def reference_draw(logits: torch.Tensor, temperatures: list[float], uniforms: torch.Tensor) -> torch.Tensor:
    """rollout/paged/sampler.py's rule: CDF of softmax(logits / t) in float64, searched at u * total."""
    cdf = torch.softmax(logits / torch.tensor(temperatures)[:, None], dim=-1).double().cumsum(dim=-1)
    return torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True)[:, 0]


@pytest.mark.parametrize("vocab", [1100, 37])
def test_sampling_draws_the_reference_tokens_with_the_policy_logprobs(vocab):
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(64, vocab, generator=g) * 3  # 64 x 1100: threaded
    temperatures = [1.0] * 24 + [0.7] * 20 + [0.0] * 20
    uniforms = torch.rand(64, dtype=torch.float64, generator=g)
    tokens, logprobs = sample_rows(logits, temperatures, uniforms)
    sampled = reference_draw(logits[:44], temperatures[:44], uniforms[:44])
    assert tokens == sampled.tolist() + logits[44:].argmax(dim=-1).tolist()
    expected = logits.log_softmax(dim=-1).gather(1, torch.tensor(tokens)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(logprobs), expected, atol=1e-5, rtol=1e-5)


def test_a_row_with_a_nan_gets_the_nan_index_and_a_nan_logprob():
    """As torch's argmax would pick it; and no read past the row, greedy or sampled."""
    logits = torch.randn(3, 40)
    logits[0, 0] = logits[1, 17] = logits[2, 39] = float("nan")
    tokens, logprobs = sample_rows(logits, [0.0, 1.0, 0.0], torch.full((3,), 0.5, dtype=torch.float64))
    assert tokens == [0, 17, 39] and all(math.isnan(p) for p in logprobs)


def test_sampling_never_draws_a_token_of_zero_probability():
    logits = torch.full((4, 40), -1e4)
    logits[:, [3, 17, 35]] = torch.tensor([1.0, 2.0, 1.5])  # the rest have probability 0
    logits[3, 3], logits[3, 17], logits[3, 35] = 0.5, 1.0, 1.0  # a tie: greedy takes the first index
    uniforms = torch.tensor([0.0, 1.0 - 2**-53, 0.5, 0.9], dtype=torch.float64)
    tokens, logprobs = sample_rows(logits, [1.0, 1.0, 0.5, 0.0], uniforms)
    assert tokens[:2] == [3, 35] and tokens[2] in (3, 17, 35) and tokens[3] == 17
    assert all(p <= 0 for p in logprobs)

def test_a_failed_build_names_the_compiler_and_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TREADLE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(build.KernelUnavailable, match="'no-such-cc' does not run"):
        build.build()
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "broken.c").write_text("this is not C\n")
    monkeypatch.delenv("CC")
    with pytest.raises(build.KernelUnavailable, match="could not build broken.c: .*error"):
        build.build(sources)
    assert list(tmp_path.glob("*.so")) == []


def test_an_unwritable_cache_makes_the_kernels_unavailable_not_an_error(tmp_path, monkeypatch):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setenv("TREADLE_KERNEL_CACHE", str(not_a_directory / "kernels"))
    with pytest.raises(build.KernelUnavailable, match="could not build the kernels into the cache \\((FileExistsError|NotADirectoryError)"):
        build.library.__wrapped__()  # the cached library of this process stays as it is


def test_a_built_library_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TREADLE_KERNEL_CACHE", str(tmp_path))
    first = build.build()
    stamp = first.stat().st_mtime_ns
    assert build.build() == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_auto_takes_the_kernel_on_a_cpu_in_float32_only():
    cpu = torch.device("cpu")
    assert choose_kernel("auto", cpu, torch.float32) == "cpu"
    assert choose_kernel("auto", cpu, torch.bfloat16) == "torch"
    assert choose_kernel("torch", cpu, torch.float32) == "torch"
    with pytest.raises(EngineConfigError, match="decode_kernel=cpu runs float32 on a CPU, not torch.bfloat16"):
        choose_kernel("cpu", cpu, torch.bfloat16)
    # On a GPU, auto is the Triton kernel when triton is installed (choosing reads no device).
    assert choose_kernel("auto", torch.device("cuda"), torch.bfloat16) == "triton"


def test_without_the_kernel_auto_warns_and_cpu_is_refused(monkeypatch):
    monkeypatch.setattr(build, "available", lambda: "no C compiler (cc or gcc, or $CC) on PATH")
    cpu = torch.device("cpu")
    with pytest.warns(RuntimeWarning, match="the CPU kernel is unavailable \\(no C compiler"):
        assert choose_kernel("auto", cpu, torch.float32) == "torch"
    with pytest.raises(EngineConfigError, match="engine.decode_kernel=cpu: no C compiler"):
        choose_kernel("cpu", cpu, torch.float32)

