"""How the Triton decode kernel is launched for a shape: tiles, warps and split-K.

    plan = plan_decode(num_seqs, num_heads, kv_heads, head_dim, block_size, max_blocks, num_sms)

Plain Python (no torch, no triton), so the choices are unit-tested on any machine
(tests/rollout/test_paged_decode_kernel.py). rollout/kernels/paged_decode_triton.py
launches what this returns.

Tiles per head size (`TUNING`): a program walks its sequence's block table
`pages_per_step` KV blocks (pages) at a time, i.e. `keys_per_step` keys, whose K and V
tiles it loads once for its whole query group. The entries were chosen without a GPU
to time them: each candidate (16/32/64 keys, 2/4/8 warps, 2/3 stages) was compiled for
sm_90 with triton 3.9, and the table keeps the widest tile whose registers (ptxas:
55-88 a thread, no spills) and shared memory still let 5-8 programs share an SM, so
each SM has tens of KB of K/V loads in flight (grouped tiles are software-pipelined
through shared memory; the broadcast path of MHA is not). They are the first thing to
retune from GPU measurements (benchmarks/decode_kernel.py).

Query groups: a group of one (MHA) computes q.k and p.v as broadcast products on CUDA
cores; a group of two or more uses tensor-core `tl.dot`, whose row count is padded to
16 (the smallest dot tile), so one program computes every query head of a KV head from a
single read of its K and V.

Split-K (flash-decoding): one program per (sequence, KV head) leaves most of a GPU idle
when the batch is small and contexts long (8 sequences x 8 KV heads = 64 programs on
132 SMs, each streaming 8k keys). `choose_num_splits` then cuts each sequence's blocks
into partitions, one program each, until there are about `PROGRAMS_PER_SM` programs per
SM, without making a partition shorter than `MIN_KEYS_PER_SPLIT` keys (below that the
partial results' write and the reduce cost more than the parallelism gains). It looks
only at shapes (the block table's width, not the context lengths in it), so a launch
needs no device-to-host copy and can be captured in a CUDA graph. Under CUDA graphs the
table is as wide as max_model_len, so short contexts get partitions that are empty:
such a program stops at once and the reduce gives it no weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

PROGRAMS_PER_SM = 4
"""Split until (sequences x KV heads x splits) reaches this many programs per SM."""
MIN_KEYS_PER_SPLIT = 256
"""No partition covers fewer keys of the block table's width than this."""
MAX_SPLITS = 64
"""Upper bound on partitions per sequence (the reduce kernel holds them all at once)."""
MIN_DOT = 16
"""Smallest row, column and inner size of a Triton `tl.dot`."""


class Tile(NamedTuple):
    keys_per_step: int
    num_warps: int
    num_stages: int


TUNING: dict[int, tuple[Tile, Tile]] = {
    # largest head_dim: (tile for one query head a KV head, tile for a group)
    64: (Tile(32, 4, 2), Tile(64, 4, 2)),
    128: (Tile(32, 4, 2), Tile(32, 4, 3)),
    256: (Tile(16, 4, 2), Tile(16, 4, 2)),
}


@dataclass(frozen=True)
class DecodePlan:
    group_rows: int
    """Query rows a program computes: next power of two of the group, at least 16 with dot."""
    block_d: int
    """head_dim padded to a power of two (at least 16 with dot); the tail is masked."""
    pages_per_step: int
    """KV blocks a program loads per loop step."""
    use_dot: bool
    """Tensor-core tl.dot (grouped queries) or broadcast products (one query head)."""
    num_warps: int
    num_stages: int
    num_splits: int
    """Partitions of each sequence's blocks (1: no split-K, no reduce kernel)."""


def next_power_of_2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def choose_num_splits(
    num_programs: int, max_keys: int, num_sms: int, *, programs_per_sm: int = PROGRAMS_PER_SM,
    min_keys_per_split: int = MIN_KEYS_PER_SPLIT, max_splits: int = MAX_SPLITS,
) -> int:
    """Partitions per sequence for `num_programs` (sequence, KV head) programs over block
    tables `max_keys` keys wide on `num_sms` SMs."""
    assert num_programs > 0 and max_keys > 0 and num_sms > 0
    target = programs_per_sm * num_sms
    if num_programs >= target:
        return 1
    wanted = -(-target // num_programs)
    by_length = max(1, max_keys // min_keys_per_split)
    return max(1, min(wanted, by_length, max_splits))


def tuning(head_dim: int, grouped: bool) -> Tile:
    for largest in sorted(TUNING):
        if head_dim <= largest:
            return TUNING[largest][grouped]
    raise ValueError(f"the Triton decode kernel takes head_dim up to {max(TUNING)}, not {head_dim}")


def plan_decode(
    num_seqs: int, num_heads: int, kv_heads: int, head_dim: int, block_size: int, max_blocks: int, num_sms: int,
    num_splits: int | None = None,
) -> DecodePlan:
    """The launch for a decode batch; `num_splits` forces the partition count (tests)."""
    if num_heads % kv_heads:
        raise ValueError(f"{num_heads} query heads do not divide into {kv_heads} KV heads")
    if block_size & (block_size - 1):
        raise ValueError(f"the Triton decode kernel needs a power-of-two block_size, not {block_size}")
    group = num_heads // kv_heads
    use_dot = group > 1
    tile = tuning(head_dim, use_dot)
    # A step covers whole pages, and at least 16 keys when they feed a dot.
    keys = max(tile.keys_per_step, block_size, MIN_DOT if use_dot else 1)
    if num_splits is None:
        num_splits = choose_num_splits(num_seqs * kv_heads, max_blocks * block_size, num_sms)
    if not 1 <= num_splits <= MAX_SPLITS:
        raise ValueError(f"num_splits must be in 1 .. {MAX_SPLITS}, not {num_splits}")
    return DecodePlan(
        group_rows=max(next_power_of_2(group), MIN_DOT if use_dot else 1),
        block_d=max(next_power_of_2(head_dim), MIN_DOT if use_dot else 1),
        pages_per_step=keys // block_size,
        use_dot=use_dot,
        num_warps=tile.num_warps,
        num_stages=tile.num_stages,
        num_splits=num_splits,
    )
