"""Packing variable-length sequences into fixed-size rows, with no attention across them.

Rows of `seq_len` tokens are filled first-fit with whole sequences, in the order given;
each sequence keeps its own positions (0, 1, ...) and a segment id, and attention built
from segment ids is block-diagonal and causal (learner/attention_masks.py; the layout per
device, a dense mask or a FlexAttention block mask, is learner/packed_attention.py's), so a
packed forward pass equals running every sequence alone (tests/learner/test_packing.py).
Labels follow the usual shift: position p is trained to predict token p + 1 when that
token is trainable. Plain numpy, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IGNORE = -100


@dataclass
class PackedBatch:
    input_ids: np.ndarray  # [rows, seq_len] int64, 0 where padding
    position_ids: np.ndarray  # [rows, seq_len] int64
    segment_ids: np.ndarray  # [rows, seq_len] int32; 0 = padding, 1.. = sequence (or tree) within the row
    labels: np.ndarray  # [rows, seq_len] int64; IGNORE where nothing is trained
    num_sequences: int  # the units packed: sequences, or prefix trees (learner/prefix_tree.py)
    one_per_row: bool = False
    """Each row holds at most one sequence, from column 0: a plain causal mask is the
    block-diagonal one, so attention needs no mask (and skips the masked half)."""
    attend_end: np.ndarray | None = None
    """[rows, seq_len] int64 or None: key slot kv is visible to query slots kv ..
    attend_end[kv] - 1 (a prefix-shared thread tree's rule, learner/prefix_tree.py);
    None: each sequence sees itself, causally (from segment_ids)."""

    @property
    def num_tokens(self) -> int:
        return int((self.segment_ids > 0).sum())

    @property
    def num_trained_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


def pack(
    sequences: Sequence[tuple[Sequence[int], Sequence[bool]]], seq_len: int, num_rows: int, one_per_row: bool = False
) -> PackedBatch:
    """Pack a prefix of `sequences` ((token ids, trainable flags) pairs) into `num_rows` rows.

    Takes sequences in order while each fits in some row (first fit; with `one_per_row`,
    only an empty row) and stops at the first that does not; `num_sequences` says how many
    were taken. Sequences longer than `seq_len` must be filtered out before.
    """
    input_ids = np.zeros((num_rows, seq_len), dtype=np.int64)
    position_ids = np.zeros((num_rows, seq_len), dtype=np.int64)
    segment_ids = np.zeros((num_rows, seq_len), dtype=np.int32)
    labels = np.full((num_rows, seq_len), IGNORE, dtype=np.int64)
    fill = [0] * num_rows
    segments = [0] * num_rows
    taken = 0
    for ids, trainable in sequences:
        n = len(ids)
        assert 0 < n <= seq_len and len(trainable) == n, f"sequence of {n} tokens for rows of {seq_len}"
        row = next((r for r in range(num_rows) if fill[r] + n <= seq_len and not (one_per_row and fill[r])), None)
        if row is None:
            break
        start, end = fill[row], fill[row] + n
        segments[row] += 1
        input_ids[row, start:end] = ids
        position_ids[row, start:end] = np.arange(n)
        segment_ids[row, start:end] = segments[row]
        targets = np.asarray(ids[1:], dtype=np.int64)
        labels[row, start : end - 1] = np.where(np.asarray(trainable[1:], dtype=bool), targets, IGNORE)
        fill[row] = end
        taken += 1
    return PackedBatch(input_ids, position_ids, segment_ids, labels, taken, one_per_row)
