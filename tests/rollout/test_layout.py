"""A step's flat batch, worked out by hand (block size 4); plain Python, no model."""
from __future__ import annotations

from rollout.engine import SamplingParams
from rollout.paged.layout import group_prefills, lay_out
from rollout.paged.scheduler import Chunk
from rollout.paged.sequence import Sequence


def seq(tokens, table):
    s = Sequence("s", list(tokens), SamplingParams(), 4)
    s.block_table = table
    return s


def test_decodes_first_then_prefill_groups():
    a = seq(range(10, 16), [7, 2])  # decodes position 5
    b = seq(range(40, 48), [3, 5])  # fully cached prompt: reruns position 7, writes nothing
    c = seq([20, 21, 22], [9])  # prefill of a whole 3-token prompt
    d = seq(range(30, 39), [1, 4, 6])  # prefill of positions 4..8 after a cached block
    chunks = [Chunk(c, 0, 3, 0), Chunk(a, 5, 6, 5), Chunk(d, 4, 9, 4), Chunk(b, 7, 8, 8)]
    layout = lay_out(chunks, block_size=4)
    assert layout.input_ids == [15, 47, 20, 21, 22, 34, 35, 36, 37, 38]
    assert layout.positions == [5, 7, 0, 1, 2, 4, 5, 6, 7, 8]
    # slot = table[p // 4] * 4 + p % 4: a: 2*4+1; c: 9*4+0..2; d: 4*4+0..3, then 6*4+0.
    assert layout.slots == [9, 36, 37, 38, 16, 17, 18, 19, 24]
    assert layout.write_rows == [0, 2, 3, 4, 5, 6, 7, 8, 9] and not layout.all_written
    assert layout.logits_rows == [0, 1, 4, 9]
    assert [chunk.seq for chunk in layout.samplers] == [a, b, c, d]
    assert (layout.num_decode, layout.decode_max_blocks) == (2, 2)
    assert layout.decode_tables == [7, 2, 3, 5] and layout.decode_context_lens == [6, 8]
    (group,) = layout.prefills
    assert (group.first_row, group.num_rows, group.max_len, group.max_blocks) == (2, 8, 5, 3)
    assert group.query_rows == [2, 3, 4, 4, 4, 5, 6, 7, 8, 9]  # c padded with its last row
    assert group.output_slots == [0, 1, 2, 5, 6, 7, 8, 9]
    assert group.block_tables == [9, 0, 0, 1, 4, 6]
    assert (group.starts, group.lengths) == ([0, 4], [3, 5])


def test_a_partial_prefill_chunk_does_not_sample():
    s = seq(range(12), [0, 1, 2])
    layout = lay_out([Chunk(s, 0, 8, 0)], block_size=4)
    assert layout.logits_rows == [] and layout.samplers == [] and layout.all_written


def test_prefill_groups_bound_the_padding():
    # Sorted 2, 3, 1000: padding 2 and 3 to 3 costs 6 <= 2 * 5; adding 1000 would cost
    # 3000 > 2 * 1005, so the long chunk gets a group of its own.
    assert group_prefills([1000, 2, 3]) == [[1, 2], [0]]
    assert group_prefills([5, 5, 5]) == [[0, 1, 2]]
    assert group_prefills([]) == []
