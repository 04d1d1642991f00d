"""Packing: first-fit rows, shifted labels, and packed logprobs equal to unpacked ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.attention_masks import dense_mask, segment_mask_mod
from learner.models import init_model
from learner.packing import IGNORE, pack
from learner.presets import ModelConfig
from reasoning.countdown.tokenizer import build_tokenizer


def test_first_fit_and_labels_by_hand():
    a = ([5, 6, 7], [False, True, True])
    b = ([8, 9], [False, True])
    c = ([1, 2, 3, 4], [False, False, True, True])
    batch = pack([a, b, c], seq_len=5, num_rows=2)
    # a (3) and b (2) fill row 0; c (4) goes to row 1.
    assert batch.num_sequences == 3
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch.segment_ids.tolist() == [[1, 1, 1, 2, 2], [1, 1, 1, 1, 0]]
    # Position p predicts token p+1 of the same sequence when that token is trainable.
    assert batch.labels.tolist() == [[6, 7, IGNORE, 9, IGNORE], [IGNORE, 3, 4, IGNORE, IGNORE]]
    assert (batch.num_tokens, batch.num_trained_tokens) == (9, 5)


def test_stops_at_the_first_sequence_that_does_not_fit():
    seqs = [([1] * 4, [True] * 4), ([2] * 4, [True] * 4), ([3] * 1, [True])]
    assert pack(seqs, seq_len=5, num_rows=1).num_sequences == 1


def test_mask_is_block_diagonal_and_causal():
    mask = attention_mask(np.array([[1, 1, 2, 2, 0]]))[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 1],  # padding sees only itself
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def attention_mask(segment_ids):
    segments = torch.from_numpy(segment_ids)
    return dense_mask(segment_mask_mod(segments), *segments.shape)


def logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return logits[:-1].log_softmax(-1).gather(-1, ids[1:, None]).squeeze(-1)


@pytest.mark.parametrize("preset", ["tiny"])
def test_packed_and_unpacked_logprobs_are_equal(preset):
    tokenizer = build_tokenizer()
    model = init_model(ModelConfig(preset=preset, init_seed=1), tokenizer).eval()
    texts = ["22|3 12 19\n19+3=22|12 22\n", "10|1 2\n2-1=1|1\nFail", "<spawn><thread>4*5=20|20</thread></spawn>"]
    seqs = [([tokenizer.bos_token_id, *tokenizer.encode(t)], None) for t in texts]
    batch = pack([(ids, [True] * len(ids)) for ids, _ in seqs], seq_len=48, num_rows=2)
    assert batch.num_sequences == 3
    with torch.no_grad():
        packed = model(
            input_ids=torch.from_numpy(batch.input_ids),
            position_ids=torch.from_numpy(batch.position_ids),
            attention_mask=attention_mask(batch.segment_ids),
        ).logits
        for ids, _ in seqs:
            alone = model(torch.tensor([ids])).logits[0]
            row, start = locate(batch, ids)
            got = packed[row, start : start + len(ids)]
            torch.testing.assert_close(
                logprobs(got, torch.tensor(ids)), logprobs(alone, torch.tensor(ids)), atol=1e-5, rtol=0
            )


def locate(batch, ids):
    """(row, column) where sequence `ids` starts in a packed batch (at position 0)."""
    for row in range(batch.input_ids.shape[0]):
        line = batch.input_ids[row].tolist()
        for start in range(len(line) - len(ids) + 1):
            if line[start : start + len(ids)] == ids and batch.position_ids[row, start] == 0:
                return row, start
    raise AssertionError("sequence not found in the batch")
