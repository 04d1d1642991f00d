"""Continuous batching: which sequences run next, and how many tokens each. Plain Python.

Every step spends a token budget (`max_num_batched_tokens`) on at most `max_num_seqs`
sequences; each gets one chunk of consecutive positions:

1. Running sequences first, oldest admission first: one token each when decoding, or the
   next chunk of a prompt still being prefilled (chunked prefill). If the KV pool has no
   block for one, the most recently admitted running sequence is preempted (its blocks
   freed, its KV to be recomputed later; it goes back to the FRONT of the queue), until
   the block fits or the sequence preempted itself.
2. Then, unless something was preempted in this step, waiting sequences in arrival order:
   the longest run of a sequence's full blocks found in the prefix cache is reused, and
   the rest of its prompt is prefilled as far as the budget goes. A sequence is admitted
   only if the blocks for its first chunk fit (no watermark is kept: growth beyond that
   is paid for by preemption).

Prefix hits need the KV to exist already: requests that share a prefix and arrive
together each compute it, and only later requests reuse it (a forked child finds its
parent's KV because the parent computed it first).

A sequence whose every token hit the cache still needs the logits of its last token: that
one position is run again as a query only (`write_start == end`), reading its own KV
from the cached block and writing nothing, so a cached block is never written.

After the model ran, `on_step_done` advances the sequences' KV progress and registers
their newly completed full blocks in the prefix cache.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rollout.paged.block_manager import BlockManager
from rollout.paged.sequence import Sequence, Status


@dataclass(slots=True)
class Chunk:
    """Positions [start, end) of `seq` go through the model in this step."""

    seq: Sequence
    start: int
    end: int
    write_start: int
    """KV is written for positions >= write_start (earlier ones are already cached)."""

    @property
    def samples(self) -> bool:
        """Whether the chunk reaches the sequence's last token, so a token is sampled."""
        return self.end == self.seq.num_tokens


class Scheduler:
    def __init__(self, blocks: BlockManager, *, max_num_seqs: int, max_num_batched_tokens: int):
        assert max_num_batched_tokens >= max_num_seqs >= 1
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.prefix_cache_hit_tokens = 0
        self.num_preemptions = 0

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        assert seq.status is Status.WAITING
        self.waiting.append(seq)

    def schedule(self) -> list[Chunk]:
        budget = self.max_num_batched_tokens
        block_size = self.blocks.block_size
        chunks: list[Chunk] = []
        preempted = False
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            computed, num_tokens = seq.num_computed_tokens, len(seq.token_ids)
            assert computed < num_tokens, "a running sequence has a token to compute"
            end = min(num_tokens, computed + budget)
            num_new_blocks = -(-end // block_size) - len(seq.block_table)
            if num_new_blocks > 0:  # only every block_size-th decode step
                preempted |= self._make_room(num_new_blocks, seq)
                if seq.status is not Status.RUNNING:
                    break
                seq.block_table += self.blocks.allocate(num_new_blocks)
            chunks.append(Chunk(seq, computed, end, computed))
            budget -= end - computed
            index += 1
        while not preempted and self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            chunk = self._admit(self.waiting[0], budget)
            if chunk is None:
                break
            self.waiting.popleft()
            chunks.append(chunk)
            budget -= chunk.end - chunk.start
        return chunks

    def on_step_done(self, chunks: list[Chunk]) -> None:
        """Record the KV the step computed; call before appending sampled tokens."""
        epoch, block_size = self.blocks.epoch, self.blocks.block_size
        for chunk in chunks:
            seq = chunk.seq
            if chunk.end > seq.num_computed_tokens:
                seq.num_computed_tokens = chunk.end
            num_full = seq.num_computed_tokens // block_size
            if num_full <= seq.num_registered_blocks or seq.cache_epoch != epoch:
                continue  # no new full block, or admitted under older weights (never shared)
            hashes = seq.full_block_hashes()
            for index in range(seq.num_registered_blocks, num_full):
                self.blocks.register(seq.block_table[index], hashes[index])
            seq.num_registered_blocks = num_full

    def finish(self, seq: Sequence) -> None:
        """Remove a running or waiting sequence and free its blocks."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
        self.blocks.free(seq.block_table)
        seq.block_table = []
        seq.status = Status.FINISHED

    def _admit(self, seq: Sequence, budget: int) -> Chunk | None:
        hits = self.blocks.match_prefix(seq.full_block_hashes())
        num_cached = len(hits) * seq.block_size
        start = min(num_cached, seq.num_tokens - 1)  # the last token always runs, for its logits
        end = min(seq.num_tokens, start + budget)
        num_new_blocks = max(self.blocks.blocks_for(end) - len(hits), 0)
        if not self.blocks.can_allocate(num_new_blocks, hits):
            return None
        self.blocks.acquire(hits)
        seq.block_table = hits + self.blocks.allocate(num_new_blocks)
        seq.num_computed_tokens = num_cached
        seq.num_registered_blocks = len(hits)
        seq.cache_epoch = self.blocks.epoch
        if seq.num_admissions == 0:  # a recomputed sequence keeps what it first reported
            seq.num_cached_prompt_tokens = min(num_cached, seq.prompt_len)
        seq.num_admissions += 1
        seq.prefill_end = seq.num_tokens
        self.prefix_cache_hit_tokens += num_cached
        seq.status = Status.RUNNING
        self.running.append(seq)
        return Chunk(seq, start, end, write_start=num_cached)

    def _make_room(self, num_blocks: int, seq: Sequence) -> bool:
        """Preempt the newest running sequences until `num_blocks` fit or `seq` itself went."""
        preempted = False
        while not self.blocks.can_allocate(num_blocks):
            victim = self.running.pop()
            self._preempt(victim)
            preempted = True
            if victim is seq:
                break
        return preempted

    def _preempt(self, seq: Sequence) -> None:
        self.blocks.free(seq.block_table)
        seq.block_table = []
        seq.num_computed_tokens = 0
        seq.num_registered_blocks = 0
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1
