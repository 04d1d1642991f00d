"""KV blocks: allocation, reference counts, and the automatic prefix cache. Plain Python.

The KV cache is a pool of `num_blocks` blocks of `block_size` token slots. A sequence
owns a block table (block ids in order). A block is in one of three states:

- in use: `ref_count > 0`; shared by every sequence whose prefix hit it;
- cached: free (`ref_count == 0`) but still holding the KV of a known token prefix; kept
  in an LRU and revived by a prefix hit, or evicted (its hash forgotten) when a fresh
  block is needed and no empty one is left;
- empty: free and holding nothing reusable.

Prefix caching: a FULL block whose KV has been computed is registered under the hash of
its whole token prefix, chained block by block: `hash_block(parent_hash, block tokens)`.
A new sequence looks its full blocks up in order and reuses the longest run of hits, so
a forked child or a parallel thread that repeats a prefix computes no prefill for it.
Hashes are 128-bit BLAKE2b digests: collisions are not a practical concern, so tokens
are not compared again on a hit.

When a sequence's blocks are freed its tail goes into the LRU first, so eviction takes
the ends of old sequences before the prefixes other requests are likeliest to share.

`reset_prefix_cache()` forgets every hash (used on a weight update, since cached KV was
computed with the old weights) and bumps `epoch`; blocks of sequences admitted before the
reset are never registered afterwards (see Scheduler).
"""
from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque
from typing import Sequence


def hash_block(parent: bytes | None, token_ids: Sequence[int]) -> bytes:
    """The prefix hash of a full block: its parent's hash chained with its token ids."""
    digest = hashlib.blake2b(digest_size=16)
    if parent is not None:
        digest.update(parent)
    digest.update(array("q", token_ids).tobytes())
    return digest.digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        assert num_blocks >= 1 and block_size >= 1
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_hashes: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}
        """The prefix cache: prefix hash -> the block holding that prefix's last block of KV."""
        self._empty: deque[int] = deque(range(num_blocks))
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached & free, oldest first
        self.epoch = 0
        self.num_evictions = 0

    @property
    def num_free_blocks(self) -> int:
        return len(self._empty) + len(self._evictable)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def match_prefix(self, block_hashes: Sequence[bytes]) -> list[int]:
        """Blocks caching the longest run of leading `block_hashes` (not yet acquired)."""
        if not self.enable_prefix_caching:
            return []
        blocks: list[int] = []
        for block_hash in block_hashes:
            block = self.cached.get(block_hash)
            if block is None:
                break
            blocks.append(block)
        return blocks

    def can_allocate(self, num_new: int, hit_blocks: Sequence[int] = ()) -> bool:
        """Whether `acquire(hit_blocks)` then `allocate(num_new)` would succeed."""
        revived = sum(1 for block in hit_blocks if self.ref_counts[block] == 0)
        return revived + num_new <= self.num_free_blocks

    def acquire(self, hit_blocks: Sequence[int]) -> None:
        """Take a reference on cached blocks (reviving free ones out of the LRU)."""
        for block in hit_blocks:
            assert self.block_hashes[block] is not None, "only cached blocks are shared"
            if self.ref_counts[block] == 0:
                del self._evictable[block]
            self.ref_counts[block] += 1

    def allocate(self, num_new: int) -> list[int]:
        """Fresh blocks with a reference count of 1; evicts least recently freed cache first."""
        assert num_new <= self.num_free_blocks, f"need {num_new} blocks, {self.num_free_blocks} free"
        blocks = []
        for _ in range(num_new):
            if self._empty:
                block = self._empty.popleft()
            else:
                block, _ = self._evictable.popitem(last=False)
                self._forget(block)
                self.num_evictions += 1
            self.ref_counts[block] = 1
            blocks.append(block)
        return blocks

    def free(self, block_table: Sequence[int]) -> None:
        """Drop one reference on each block; the last block enters the LRU first."""
        for block in reversed(block_table):
            assert self.ref_counts[block] > 0, f"block {block} freed more often than allocated"
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if self.block_hashes[block] is not None:
                    self._evictable[block] = None
                else:
                    self._empty.append(block)

    def register(self, block: int, block_hash: bytes) -> None:
        """Record that `block` (in use, full, KV computed) holds the prefix `block_hash`.

        If another block already holds that prefix (two sequences computed it at once),
        the first stays the cached one and this block stays anonymous."""
        assert self.ref_counts[block] > 0
        if not self.enable_prefix_caching or block_hash in self.cached or self.block_hashes[block] is not None:
            return
        self.cached[block_hash] = block
        self.block_hashes[block] = block_hash

    def reset_prefix_cache(self) -> None:
        """Forget every cached prefix; cached free blocks become empty."""
        for block in list(self.cached.values()):
            self.block_hashes[block] = None
        self.cached.clear()
        self._empty.extend(self._evictable)
        self._evictable.clear()
        self.epoch += 1

    def _forget(self, block: int) -> None:
        block_hash = self.block_hashes[block]
        assert block_hash is not None and self.cached.get(block_hash) == block
        del self.cached[block_hash]
        self.block_hashes[block] = None
