"""How one step's chunks become a flat batch of token rows. Plain Python, no torch.

Rows are laid out decode-first: every one-token chunk (a decode, or the re-run last
query of a fully cached prompt) in scheduling order, then the prefill chunks, grouped
by `group_prefills` and sorted by length within the layout. For each row the layout
gives its token, its position and, when its KV is to be written, its cache slot
`block_table[p // block_size] * block_size + p % block_size`.

Decode rows get a block table padded with block 0 to the longest one and a context
length (position + 1); each prefill group gets, per padded query slot, the row feeding
it (padding repeats the chunk's last row) and, per real row, the padded slot holding
its output. The model runner turns these lists into tensors (rollout/paged/attention.py
describes how attention uses them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rollout.paged.scheduler import Chunk

MAX_PADDING = 2.0
"""A prefill group's padded query count stays within this factor of its real tokens."""


@dataclass
class PrefillLayout:
    first_row: int
    num_rows: int
    max_len: int
    """Longest chunk of the group: queries are padded to it."""
    max_blocks: int
    query_rows: list[int] = field(default_factory=list)
    output_slots: list[int] = field(default_factory=list)
    block_tables: list[int] = field(default_factory=list)
    """Flattened [num_chunks, max_blocks]."""
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


@dataclass
class StepLayout:
    input_ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    """Cache slot of each row whose KV is written, in row order."""
    write_rows: list[int] = field(default_factory=list)
    logits_rows: list[int] = field(default_factory=list)
    samplers: list[Chunk] = field(default_factory=list)
    """The chunks that sample, in `logits_rows` order."""
    num_decode: int = 0
    decode_max_blocks: int = 0
    decode_tables: list[int] = field(default_factory=list)
    """Flattened [num_decode, decode_max_blocks]."""
    decode_context_lens: list[int] = field(default_factory=list)
    prefills: list[PrefillLayout] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.input_ids)

    @property
    def all_written(self) -> bool:
        return len(self.write_rows) == self.num_rows


def group_prefills(lengths: list[int]) -> list[list[int]]:
    """Split chunk indices, sorted by length, into runs whose padded size
    (count x longest) is within MAX_PADDING of their total length."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    total = 0
    for index in order:
        if groups and (len(groups[-1]) + 1) * lengths[index] <= MAX_PADDING * (total + lengths[index]):
            groups[-1].append(index)
            total += lengths[index]
        else:
            groups.append([index])
            total = lengths[index]
    return groups


def lay_out(chunks: list[Chunk], block_size: int) -> StepLayout:
    bs = block_size
    decodes = [c for c in chunks if c.end - c.start == 1]
    prefills = [c for c in chunks if c.end - c.start > 1]
    out = StepLayout(num_decode=len(decodes))
    width = out.decode_max_blocks = max((-(-c.end // bs) for c in decodes), default=0)
    # The common case, kept lean (local names for the lists: a decode step runs this per row).
    input_ids, positions, slots, write_rows = out.input_ids, out.positions, out.slots, out.write_rows
    tables, context_lens, logits_rows, samplers = out.decode_tables, out.decode_context_lens, out.logits_rows, out.samplers
    for row, chunk in enumerate(decodes):
        seq, position = chunk.seq, chunk.start
        table = seq.block_table
        input_ids.append(seq.token_ids[position])
        positions.append(position)
        if chunk.write_start <= position:
            slots.append(table[position // bs] * bs + position % bs)
            write_rows.append(row)
        num_blocks = -(-chunk.end // bs)
        tables += table[:num_blocks]
        if num_blocks < width:
            tables += [0] * (width - num_blocks)
        context_lens.append(chunk.end)
        if chunk.end == len(seq.token_ids):  # chunk.samples
            logits_rows.append(row)
            samplers.append(chunk)
    for indices in group_prefills([c.end - c.start for c in prefills]):
        group = [prefills[i] for i in indices]
        layout = PrefillLayout(
            first_row=out.num_rows, num_rows=0, max_len=group[-1].end - group[-1].start,
            max_blocks=max(-(-c.end // bs) for c in group),
        )
        for k, chunk in enumerate(group):
            _add_prefill_chunk(out, layout, k, chunk, bs)
        layout.num_rows = out.num_rows - layout.first_row
        out.prefills.append(layout)
    return out


def _add_prefill_chunk(out: StepLayout, layout: PrefillLayout, k: int, chunk: Chunk, bs: int) -> None:
    seq, start, end = chunk.seq, chunk.start, chunk.end
    row, length, table = out.num_rows, end - start, seq.block_table
    out.input_ids += seq.token_ids[start:end]
    out.positions += range(start, end)
    for position in range(max(chunk.write_start, start), end):
        out.slots.append(table[position // bs] * bs + position % bs)
        out.write_rows.append(row + position - start)
    layout.query_rows += [row + min(i, length - 1) for i in range(layout.max_len)]
    layout.output_slots += range(k * layout.max_len, k * layout.max_len + length)
    num_blocks = -(-end // bs)
    layout.block_tables += table[:num_blocks] + [0] * (layout.max_blocks - num_blocks)
    layout.starts.append(start)
    layout.lengths.append(length)
    if chunk.samples:
        out.logits_rows.append(row + length - 1)
        out.samplers.append(chunk)
