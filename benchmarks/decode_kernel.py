"""Decode attention bandwidth on CUDA: the Triton paged kernel against the torch path.

    python3 -m benchmarks.decode_kernel [--json] [--repeats 20]      (a CUDA GPU only)

One decode step's attention (one query token a sequence, one layer) at three shapes, in
bf16 with blocks of 16 slots, every sequence at the same context length, its blocks
scattered over the cache in a random order as in an engine that has run a while:

    mha-16x64      apr-228m's 16:16 heads of 64       batch 64, context 1024
    qwen2.5-1.5b   12 query heads over 2 KV heads, 128 batch 64, context 4096
    llama-3-8b     32 query heads over 8 KV heads, 128 batch 8,  context 8192

Each shape's K and V hold 256 MiB (five times an H100's or H200's 50 MB L2), so every
call streams them from HBM. The batches expose the old kernel's two problems: at
Qwen's 12:2 heads it read each KV head six times, and 8 sequences x 8 KV heads at 8k
keys run as 64 programs on 132 SMs unless the context is split (flash-decoding; the
kernel's plan chooses 1, 5 and 9 partitions here on 132 SMs).

Figures: TB/s = bytes that attention must move (the K and V of every visible key, plus
q and the output) / the time of one call, averaged over `repeats` back-to-back calls
timed with CUDA events after three warm-up calls (the first compiles the Triton
kernel). The torch path (`paged_decode_torch`: gather into a reused workspace, then
SDPA) moves more than that (its gather writes and rereads a copy) but is credited the
same bytes, so the two figures compare times. Before timing, each shape's Triton output
is checked against the torch path's (`decode_kernel_max_rel_err`: the largest
difference over the largest output); past 5% it raises rather than report a wrong
kernel's speed.

`measure_decode_kernels` returns the figures, every name prefixed so that `treadle
bench engine --device cuda` can merge them into its own; `main` prints them, the last
line one JSON object, and exits with 2 and a message on a machine without CUDA.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass

# torch and triton are imported inside the functions: `--help` must not pay for them.

BLOCK_SIZE = 16
MAX_REL_ERR = 0.05


@dataclass(frozen=True)
class DecodeShape:
    num_heads: int
    kv_heads: int
    head_dim: int
    batch: int
    context: int

    def moved_bytes(self, element_size: int) -> int:
        """K and V of every visible key, plus q and the output."""
        kv = 2 * self.batch * self.context * self.kv_heads * self.head_dim
        q_out = 2 * self.batch * self.num_heads * self.head_dim
        return (kv + q_out) * element_size


SHAPES = {
    "mha-16x64": DecodeShape(16, 16, 64, batch=64, context=1024),
    "qwen2.5-1.5b": DecodeShape(12, 2, 128, batch=64, context=4096),
    "llama-3-8b": DecodeShape(32, 8, 128, batch=8, context=8192),
}


def make_inputs(shape: DecodeShape, device: str, seed: int = 0):
    """q, k_cache, v_cache and a DecodeBatch over shuffled blocks (no padding in the tables)."""
    import torch

    from rollout.kernels.paged_decode import DecodeBatch, Workspace

    g = torch.Generator(device=device).manual_seed(seed)
    pages = shape.context // BLOCK_SIZE
    num_blocks = shape.batch * pages
    cache_shape = (num_blocks, BLOCK_SIZE, shape.kv_heads, shape.head_dim)
    k_cache = torch.randn(cache_shape, generator=g, device=device, dtype=torch.bfloat16)
    v_cache = torch.randn(cache_shape, generator=g, device=device, dtype=torch.bfloat16)
    tables = torch.randperm(num_blocks, generator=g, device=device).view(shape.batch, pages)
    lens = torch.full((shape.batch,), shape.context, dtype=torch.long, device=device)
    q = torch.randn(shape.batch, shape.num_heads, shape.head_dim, generator=g, device=device, dtype=torch.bfloat16)
    return q, k_cache, v_cache, DecodeBatch(tables, lens, Workspace())


def time_call(fn, repeats: int) -> float:
    """Seconds a call, averaged over `repeats` back-to-back calls after 3 warm-ups."""
    import torch

    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / repeats


def measure_decode_kernels(device: str = "cuda", repeats: int = 20) -> dict:
    """TB/s of the Triton kernel and of the torch path at each of SHAPES (see the module
    docstring), with their milliseconds, the kernel's partition counts and the largest
    relative difference between the two outputs."""
    import torch

    if not (device.startswith("cuda") and torch.cuda.is_available()):
        raise RuntimeError(f"the decode kernel benchmark needs a CUDA GPU (device={device!r}, cuda available: {torch.cuda.is_available()})")
    from rollout.kernels.paged_decode import paged_decode_torch
    from rollout.kernels.paged_decode_triton import paged_decode_triton, plan_for

    figures: dict = {name: {} for name in (
        "decode_kernel_tb_per_s", "torch_decode_tb_per_s", "decode_kernel_ms", "torch_decode_ms",
        "decode_kernel_splits", "decode_kernel_max_rel_err",
    )}
    for name, shape in SHAPES.items():
        q, k_cache, v_cache, batch = make_inputs(shape, device)
        scale = shape.head_dim ** -0.5
        kernel = functools.partial(paged_decode_triton, q, k_cache, v_cache, batch, scale)
        reference = functools.partial(paged_decode_torch, q, k_cache, v_cache, batch, scale)
        expected = reference().float()
        err = ((kernel().float() - expected).abs().max() / expected.abs().max()).item()
        if err > MAX_REL_ERR:
            raise AssertionError(f"{name}: the Triton kernel's output differs from the torch path's by {err:.3g} (relative)")
        moved = shape.moved_bytes(k_cache.element_size())
        kernel_s, torch_s = time_call(kernel, repeats), time_call(reference, repeats)
        figures["decode_kernel_tb_per_s"][name] = round(moved / kernel_s / 1e12, 3)
        figures["torch_decode_tb_per_s"][name] = round(moved / torch_s / 1e12, 3)
        figures["decode_kernel_ms"][name] = round(kernel_s * 1e3, 4)
        figures["torch_decode_ms"][name] = round(torch_s * 1e3, 4)
        figures["decode_kernel_splits"][name] = plan_for(q, k_cache, batch).num_splits
        figures["decode_kernel_max_rel_err"][name] = round(err, 5)
        del q, k_cache, v_cache, batch, expected
        torch.cuda.empty_cache()
    # Prefixed names: the engine bench merges these figures into its own.
    figures["decode_kernel_device"] = torch.cuda.get_device_name(device)
    figures["decode_kernel_repeats"] = repeats
    return figures


def table(figures: dict) -> str:
    rows = [f"decode attention on {figures['decode_kernel_device']} (bf16, block_size {BLOCK_SIZE})"]
    rows.append(f"  {'shape':14s} {'triton TB/s':>11s} {'torch TB/s':>10s} {'triton ms':>9s} {'torch ms':>9s} {'splits':>6s}")
    for name in SHAPES:
        rows.append(
            f"  {name:14s} {figures['decode_kernel_tb_per_s'][name]:11.3f} {figures['torch_decode_tb_per_s'][name]:10.3f} "
            f"{figures['decode_kernel_ms'][name]:9.4f} {figures['torch_decode_ms'][name]:9.4f} "
            f"{figures['decode_kernel_splits'][name]:6d}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.decode_kernel", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per kernel and shape (default 20)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks.decode_kernel: no CUDA GPU here; this benchmark times GPU kernels only", file=sys.stderr)
        return 2
    figures = measure_decode_kernels("cuda", args.repeats)
    if not args.json:
        print(table(figures))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
