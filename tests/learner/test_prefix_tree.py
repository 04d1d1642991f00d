"""Prefix sharing: the tree layout by hand, and tree-packed logprobs equal per-sequence ones."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from learner.attention_masks import dense_mask, span_mask_mod
from learner.prefix_tree import build_tree


def tree_mask(attend_end: np.ndarray) -> np.ndarray:
    """[L, L] bool (True = query may attend key): the learner's span rule on one tree."""
    ends = torch.from_numpy(attend_end)[None]
    return dense_mask(span_mask_mod(ends), 1, len(attend_end))[0, 0].numpy()


def test_layout_by_hand():
    # Two branches share the parent's prefix 1 2 3; the parent goes on with 4 (as branch a).
    parent = ([1, 2, 3, 4, 5], [False, True, True, False, False])
    branch_a = ([1, 2, 3, 4, 6], [False, False, False, False, True])
    branch_b = ([1, 2, 3, 7, 8], [False, False, False, False, True])
    tree = build_tree([parent, branch_a, branch_b])
    # Depth first: 1 2 3 4 5, then 4's copy for its second child 6, then 3's copy for 7 8.
    assert tree.token_ids.tolist() == [1, 2, 3, 4, 5, 4, 6, 3, 7, 8]
    assert tree.positions.tolist() == [0, 1, 2, 3, 4, 3, 4, 2, 3, 4]
    assert tree.attend_end.tolist() == [10, 10, 7, 5, 5, 7, 7, 10, 10, 10]
    assert tree.trainable.tolist() == [False, True, True, False, False, False, True, False, False, True]
    assert [i.tolist() for i in tree.index] == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 6], [0, 1, 2, 8, 9]]
    mask = tree_mask(tree.attend_end)
    # Branch b's last token sees the shared prefix 1 2, the copy of 3, and its own 7 8:
    assert np.flatnonzero(mask[9]).tolist() == [0, 1, 7, 8, 9]
    # Branch a's 6 sees 1 2 3 and the copy of 4, not the parent's 5:
    assert np.flatnonzero(mask[6]).tolist() == [0, 1, 2, 5, 6]


def test_two_sequences_that_train_the_same_tokens_are_not_merged_there():
    a = ([1, 2, 3], [False, True, True])
    b = ([1, 2, 4], [False, True, True])  # a second sample that began like the first
    tree = build_tree([a, b])
    # The prompt token is shared; 2 is trained by both, so each keeps its own.
    assert tree.token_ids.tolist() == [1, 2, 3, 1, 2, 4]
    assert tree.trainable.sum() == 4 and tree.owner.tolist() == [0, 0, 0, 0, 1, 1]


def test_a_chain_is_plain_causal_and_distinct_roots_never_meet():
    tree = build_tree([([1, 2, 3], [True] * 3), ([4, 5], [True] * 2)])
    assert tree.attend_end.tolist() == [3, 3, 3, 5, 5]
    mask = tree_mask(tree.attend_end)
    assert (mask[:3, :3] == np.tril(np.ones((3, 3), bool))).all() and not mask[3:, :3].any()


def test_rejects_flags_that_do_not_match():
    with pytest.raises(ValueError, match="sequence 1: 2 tokens and 1 trainable"):
        build_tree([([1], [True]), ([1, 2], [True])])


def _random_family(rng: random.Random, vocab: int) -> list[tuple[list[int], list[bool]]]:
    """A parent, branches that continue its prefix, a second sample with the same prompt."""
    prompt = [rng.randrange(vocab) for _ in range(rng.randint(3, 8))]
    thinking = [rng.randrange(vocab) for _ in range(rng.randint(2, 6))]
    fork = prompt + thinking
    out = [(fork + [rng.randrange(vocab) for _ in range(5)], [False] * len(prompt) + [True] * (len(thinking) + 5))]
    for _ in range(rng.randint(1, 4)):
        body = [rng.randrange(vocab) for _ in range(rng.randint(1, 6))]
        out.append((fork + body, [False] * len(fork) + [True] * len(body)))
    other = [rng.randrange(vocab) for _ in range(4)]
    out.append((prompt + other, [False] * len(prompt) + [True] * 4))
    rng.shuffle(out)
    return out


def test_every_sequence_reads_back_exactly():
    rng = random.Random(0)
    for _ in range(200):
        family = _random_family(rng, vocab=3)  # a tiny vocabulary: many accidental merges
        tree = build_tree(family)
        mask = tree_mask(tree.attend_end)
        trained = 0
        for (ids, flags), index in zip(family, tree.index):
            assert tree.token_ids[index].tolist() == ids
            assert tree.positions[index].tolist() == list(range(len(ids)))
            # A token's ancestors are exactly the sequence's earlier tokens (their node slots
            # or copies of them at the same depth with the same token).
            for i in range(len(ids)):
                seen = np.flatnonzero(mask[index[i]])
                assert tree.token_ids[seen].tolist() == ids[: i + 1]
                assert tree.positions[seen].tolist() == list(range(i + 1))
            # Token i >= 1 is predicted at the slot right before its own.
            assert all(tree.positions[index[i] - 1] == i - 1 for i in range(1, len(ids)))
            trained += sum(flags)
        assert int(tree.trainable.sum()) == trained


@pytest.mark.parametrize("arch", ["llama3", "qwen3"])
def test_tree_packed_logprobs_equal_each_sequence_run_alone(arch, tmp_path):
    from tests.hf_models import bpe_tokenizer, save_model
    from transformers import AutoModelForCausalLM

    tokenizer = bpe_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(save_model(tmp_path, arch, tokenizer), dtype=torch.float32).eval()
    family = _random_family(random.Random(1), vocab=len(tokenizer))
    tree = build_tree(family)
    mask = torch.from_numpy(tree_mask(tree.attend_end))[None, None]
    with torch.no_grad():
        packed = model(
            input_ids=torch.from_numpy(tree.token_ids)[None],
            position_ids=torch.from_numpy(tree.positions)[None],
            attention_mask=mask,
        ).logits[0].log_softmax(-1)
        for (ids, _), index in zip(family, tree.index):
            alone = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            expected = alone[:-1].gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)
            got = packed[torch.from_numpy(index[1:] - 1)].gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
