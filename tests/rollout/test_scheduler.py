"""Scheduler without a model: chunked prefill, batching, prefix hits, preemption order.

A fake step stands in for the model: it records the computed KV and appends token 7 to
every sequence whose chunk reached its last token. Block size 4 throughout.
"""
from __future__ import annotations

from rollout.engine import SamplingParams
from rollout.paged.block_manager import BlockManager
from rollout.paged.scheduler import Chunk, Scheduler
from rollout.paged.sequence import Sequence, Status

BLOCK = 4


def make(num_blocks=16, max_num_seqs=4, budget=64, caching=True):
    blocks = BlockManager(num_blocks, BLOCK, enable_prefix_caching=caching)
    return Scheduler(blocks, max_num_seqs=max_num_seqs, max_num_batched_tokens=budget)


def seq(name, prompt):
    return Sequence(name, list(prompt), SamplingParams(), BLOCK)


def step(scheduler) -> list[tuple[str, int, int, int]]:
    chunks = scheduler.schedule()
    scheduler.on_step_done(chunks)
    for chunk in chunks:
        if chunk.samples:
            chunk.seq.append(7, -1.0, 0)
    return [(c.seq.request_id, c.start, c.end, c.write_start) for c in chunks]


def test_chunked_prefill_then_decode():
    scheduler = make(budget=6)
    a = seq("a", range(10))
    scheduler.add(a)
    assert step(scheduler) == [("a", 0, 6, 0)]  # 6 of 10 prompt tokens; nothing sampled
    assert a.num_computed_tokens == 6 and a.num_tokens == 10
    assert step(scheduler) == [("a", 6, 10, 6)]  # the rest, then token 7 is sampled
    assert a.output_ids == [7]
    assert step(scheduler) == [("a", 10, 11, 10)]  # decode: the sampled token's KV


def test_running_sequences_decode_together_and_the_budget_admits_the_rest():
    scheduler = make(budget=8)
    for offset, name in enumerate("abc"):
        scheduler.add(seq(name, range(10 * offset, 10 * offset + 5)))
    # Budget 8: a's 5 prompt tokens, then 3 of b's; c waits.
    assert step(scheduler) == [("a", 0, 5, 0), ("b", 0, 3, 0)]
    # a decodes (1), b finishes its prompt (2), c gets the remaining 5.
    assert step(scheduler) == [("a", 5, 6, 5), ("b", 3, 5, 3), ("c", 0, 5, 0)]
    assert step(scheduler) == [("a", 6, 7, 6), ("b", 5, 6, 5), ("c", 5, 6, 5)]


def test_max_num_seqs_caps_the_batch():
    scheduler = make(max_num_seqs=2)
    for name in "abc":
        scheduler.add(seq(name, range(3)))
    assert [name for name, *_ in step(scheduler)] == ["a", "b"]
    assert [s.request_id for s in scheduler.waiting] == ["c"]


def test_a_fork_reuses_full_blocks_of_the_parent():
    scheduler = make()
    parent = seq("parent", range(10))  # blocks [0..3] [4..7] full, [8, 9] partial
    scheduler.add(parent)
    step(scheduler)
    child = seq("child", list(range(10)) + [50])
    scheduler.add(child)
    # The child reuses the 8 tokens of the two full blocks and computes only 8, 9, 50.
    assert step(scheduler) == [("parent", 10, 11, 10), ("child", 8, 11, 8)]
    assert child.block_table[:2] == parent.block_table[:2]
    assert [scheduler.blocks.ref_counts[b] for b in parent.block_table] == [2, 2, 1]
    assert child.num_cached_prompt_tokens == 8 and scheduler.prefix_cache_hit_tokens == 8


def test_a_fully_cached_prompt_reruns_only_its_last_query():
    scheduler = make()
    first = seq("first", range(8))  # exactly two full blocks
    scheduler.add(first)
    step(scheduler)
    scheduler.finish(first)
    again = seq("again", range(8))
    scheduler.add(again)
    # Everything is cached: position 7 runs for its logits, and nothing is written.
    assert step(scheduler) == [("again", 7, 8, 8)]
    assert again.num_cached_prompt_tokens == 8
    assert again.block_table == first_blocks(scheduler, 2)


def first_blocks(scheduler, n):
    return [scheduler.blocks.cached[h] for h in seq("probe", range(4 * n)).full_block_hashes()]


def test_finished_blocks_stay_cached_until_evicted():
    scheduler = make(num_blocks=4)
    a = seq("a", range(8))
    scheduler.add(a)
    step(scheduler)
    scheduler.finish(a)
    assert scheduler.blocks.num_used_blocks == 0 and len(scheduler.blocks.cached) == 2
    # A 13-token stranger needs all 4 blocks: both cached blocks are evicted.
    b = seq("b", range(100, 113))
    scheduler.add(b)
    step(scheduler)
    assert scheduler.blocks.num_evictions == 2
    scheduler.finish(b)
    c = seq("c", range(8))
    scheduler.add(c)
    assert step(scheduler) == [("c", 0, 8, 0)]  # a's prefix is gone


def test_preemption_takes_the_newest_and_requeues_it_first():
    # 4 blocks: a, b, c each hold one full block of 4 and need a second one to decode.
    scheduler = make(num_blocks=4)
    for name in "abc":
        scheduler.add(seq(name, range(4 * "abc".index(name) + 10, 4 * "abc".index(name) + 13)))
    step(scheduler)  # prompts of 3 tokens: one block each; each samples its 4th token
    assert scheduler.blocks.num_used_blocks == 3
    step(scheduler)  # each decodes position 3 into its own block (still 1 block each)
    # Position 4 needs a second block each: a takes the free one, b preempts c, then ...
    chunks = step(scheduler)
    assert chunks == [("a", 4, 5, 4), ("b", 4, 5, 4)]
    assert [s.request_id for s in scheduler.waiting] == ["c"]
    c = scheduler.waiting[0]
    assert c.status is Status.WAITING and c.num_computed_tokens == 0 and c.output_ids == [7, 7]
    assert scheduler.num_preemptions == 1
    # c's freed block [18, 19, 20, 7] went to the LRU, and b's new block evicted it at
    # once; so when a finishes, c recomputes its prompt and output, all 5 tokens.
    scheduler.finish(scheduler.running[0])
    assert step(scheduler) == [("b", 5, 6, 5), ("c", 0, 5, 0)]


def test_a_lone_sequence_that_cannot_grow_preempts_itself():
    scheduler = make(num_blocks=2, budget=16)
    a = seq("a", range(7))
    scheduler.add(a)
    step(scheduler)  # 7 tokens in 2 blocks, 8th sampled
    step(scheduler)  # position 7 fills block 2
    assert scheduler.schedule() == []  # position 8 needs a third block: none exists
    assert a.status is Status.WAITING and scheduler.blocks.num_used_blocks == 0


def test_blocks_computed_under_old_weights_are_never_registered():
    scheduler = make(budget=4)
    a = seq("a", range(8))
    scheduler.add(a)
    step(scheduler)  # first block computed and registered
    assert len(scheduler.blocks.cached) == 1
    scheduler.blocks.reset_prefix_cache()  # a weight update
    step(scheduler)  # the second block is computed, partly from old-weight KV
    assert scheduler.blocks.cached == {}


def test_chunk_samples_only_at_the_last_token():
    a = seq("a", range(5))
    assert not Chunk(a, 0, 4, 0).samples and Chunk(a, 0, 5, 0).samples
