"""Block manager without a model: allocation, reference counts, prefix hashing, LRU eviction."""
from __future__ import annotations

from rollout.paged.block_manager import BlockManager, hash_block


def test_hash_chains_over_the_whole_prefix():
    first = hash_block(None, [1, 2, 3, 4])
    assert hash_block(None, [1, 2, 3, 4]) == first  # deterministic across calls
    assert hash_block(None, [1, 2, 4, 3]) != first  # token order matters
    # The same block tokens after different prefixes are different cache entries.
    after_a = hash_block(hash_block(None, [9, 9, 9, 9]), [5, 6, 7, 8])
    after_b = hash_block(hash_block(None, [9, 9, 9, 8]), [5, 6, 7, 8])
    assert after_a != after_b != hash_block(None, [5, 6, 7, 8])
    assert len(first) == 16


def test_allocate_and_free_count_blocks():
    blocks = BlockManager(num_blocks=4, block_size=2)
    table = blocks.allocate(3)
    assert table == [0, 1, 2]
    assert (blocks.num_free_blocks, blocks.num_used_blocks) == (1, 3)
    assert blocks.can_allocate(1) and not blocks.can_allocate(2)
    blocks.free(table)
    assert blocks.num_free_blocks == 4 and blocks.ref_counts == [0, 0, 0, 0]
    assert blocks.blocks_for(5) == 3 and blocks.blocks_for(4) == 2 and blocks.blocks_for(0) == 0


def test_registered_blocks_are_shared_by_reference_count():
    blocks = BlockManager(num_blocks=4, block_size=2)
    h0 = hash_block(None, [1, 2])
    h1 = hash_block(h0, [3, 4])
    table = blocks.allocate(2)
    blocks.register(table[0], h0)
    blocks.register(table[1], h1)
    # The longest run of LEADING hits: a chain must start at the first block.
    assert blocks.match_prefix([h0, h1, hash_block(h1, [5, 6])]) == table
    assert blocks.match_prefix([hash_block(None, [0, 0]), h1]) == []
    blocks.acquire(table)  # a forked child
    assert blocks.ref_counts[:2] == [2, 2] and blocks.num_used_blocks == 2
    blocks.free(table)  # the parent finishes; the child still holds them
    assert blocks.ref_counts[:2] == [1, 1] and blocks.num_used_blocks == 2
    blocks.free(table)  # free, but still cached and matchable
    assert blocks.num_free_blocks == 4 and blocks.match_prefix([h0, h1]) == table


def test_lru_evicts_the_least_recently_freed_tail_first():
    blocks = BlockManager(num_blocks=3, block_size=1)
    h = [hash_block(None, [7])]
    h.append(hash_block(h[0], [8]))
    table = blocks.allocate(2)  # blocks 0, 1
    for block, block_hash in zip(table, h):
        blocks.register(block, block_hash)
    blocks.free(table)  # enters the LRU tail first: order 1, 0
    # Two fresh blocks: the empty block 2 first, then evict block 1 (the tail), keep block 0.
    assert blocks.allocate(2) == [2, 1]
    assert blocks.num_evictions == 1
    assert blocks.match_prefix(h) == [0]
    assert h[1] not in blocks.cached and blocks.block_hashes[1] is None


def test_reviving_a_cached_free_block_uses_a_free_block():
    blocks = BlockManager(num_blocks=2, block_size=1)
    h0, h1 = hash_block(None, [1]), hash_block(None, [2])
    table = blocks.allocate(2)
    blocks.register(table[0], h0)
    blocks.register(table[1], h1)
    blocks.free(table)
    # Reviving block 0 takes one of the two free blocks; one new block still fits, two don't.
    assert blocks.can_allocate(1, hit_blocks=[0]) and not blocks.can_allocate(2, hit_blocks=[0])
    blocks.acquire([0])
    assert blocks.allocate(1) == [1]  # evicts the other cached block, never the revived one
    assert blocks.match_prefix([h0]) == [0] and blocks.match_prefix([h1]) == []


def test_a_prefix_computed_twice_is_cached_once():
    blocks = BlockManager(num_blocks=2, block_size=2)
    h = hash_block(None, [1, 2])
    a, b = blocks.allocate(2)
    blocks.register(a, h)
    blocks.register(b, h)  # a concurrent duplicate stays anonymous
    assert blocks.cached == {h: a} and blocks.block_hashes[b] is None
    blocks.free([a, b])
    assert blocks.num_free_blocks == 2 and blocks.match_prefix([h]) == [a]


def test_reset_forgets_every_prefix_and_bumps_the_epoch():
    blocks = BlockManager(num_blocks=3, block_size=1)
    h0, h1 = hash_block(None, [1]), hash_block(None, [2])
    used, freed = blocks.allocate(2)
    blocks.register(used, h0)
    blocks.register(freed, h1)
    blocks.free([freed])
    blocks.reset_prefix_cache()
    assert blocks.epoch == 1 and blocks.cached == {}
    assert blocks.match_prefix([h0]) == [] and blocks.match_prefix([h1]) == []
    assert blocks.num_free_blocks == 2 and blocks.ref_counts[used] == 1
    blocks.free([used])  # no hash any more: back to the empty list, not the LRU
    assert blocks.allocate(3) == [2, 1, 0] and blocks.num_evictions == 0


def test_prefix_caching_off_never_matches():
    blocks = BlockManager(num_blocks=2, block_size=1, enable_prefix_caching=False)
    h = hash_block(None, [1])
    (block,) = blocks.allocate(1)
    blocks.register(block, h)
    assert blocks.match_prefix([h]) == [] and blocks.cached == {}
