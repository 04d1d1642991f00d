"""Prefix sharing: many sequences laid out as one token tree, each shared prefix once.

The threads of a parallel-block episode share the parent's prefix (a branch's prompt is
the parent's whole context), and the episodes of a group share their prompt. Causal
attention makes a token's hidden state a function of the tokens before it and their
positions only, so two sequences that agree on their first k tokens agree on those
tokens' hidden states: a trie of the sequences computes every shared prefix once.

Layout. The trie is written out depth first, one sequence of layout slots. A node with
several children is written once per child after the first (a *copy*: same token, same
position, same ancestors), so that every slot is followed by at most one of its
children and "slot q predicts slot q + 1" stays the training rule (learner/packing.py):
a copy costs one token per branch point. Slot q's position id is the node's depth, and
slot q may be attended by exactly the slots of its own subtree: kv may be seen by q iff

    kv <= q < attend_end[kv]

which is causal attention restricted to a token's ancestors (tree attention; the learner's
attention applies exactly this rule, learner/attention_masks.py). A chain
(one sequence) has attend_end = its end for every token, so plain packing is the special
case, and several trees in one row never see each other.

Training. A token trained in one sequence and seen as context in another (the parent's
thinking before `</parallel>`, which a branch reads as prompt) is one node, trained.
A token that two sequences both train (two samples of a group that happen to begin
alike) is not merged: the two would carry different advantages and behaviour logprobs,
so the trie splits there and each keeps its own copy of the rest of its sequence.

`Tree.index[p][i]` is the slot of token i of sequence p (the first occurrence of its
node), so per-sequence values can be gathered into the layout and the layout's outputs
read back per sequence: the logprob of token i >= 1 of sequence p is predicted at slot
`index[p][i] - 1`, whose hidden state equals the one sequence p alone would compute at
position i - 1 (tests/learner/test_prefix_tree.py checks that with real models).
`packed_trees` lays trees into packed rows for supervised training; the RL learner's
`shared` layout (learner/rl_batch.py) does the same with per-token RL values. Pure Python
and numpy; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from learner.packing import IGNORE, PackedBatch


@dataclass
class Tree:
    token_ids: np.ndarray
    """[n] int64: the layout's tokens, depth first, copies included."""
    positions: np.ndarray
    """[n] int64: each slot's depth (its token's index in every sequence through it)."""
    attend_end: np.ndarray
    """[n] int64: slot kv is visible to slots kv .. attend_end[kv] - 1 (its subtree)."""
    trainable: np.ndarray
    """[n] bool: the slot's token is trained (in the one sequence that trains it);
    false on copies, so each trained token is predicted exactly once."""
    index: list[np.ndarray]
    """Per sequence, the slot of each of its tokens ([len(sequence)] int64)."""
    owner: np.ndarray
    """[n] int64: for each slot, the sequence whose values it carries: the one that
    trains the token, else the first sequence through it."""

    def __len__(self) -> int:
        return len(self.token_ids)


class _Node:
    __slots__ = ("token", "depth", "children", "trained_by", "first_seq", "slot")

    def __init__(self, token: int, depth: int, first_seq: int):
        self.token, self.depth, self.first_seq = token, depth, first_seq
        self.children: list[_Node] = []
        self.trained_by = -1
        self.slot = -1


def build_tree(sequences: Sequence[tuple[Sequence[int], Sequence[bool]]]) -> Tree:
    """The shared layout of `sequences` ((token ids, trainable flags) pairs, each non-empty)."""
    roots: list[_Node] = []
    paths: list[list[_Node]] = []
    for s, (ids, trainable) in enumerate(sequences):
        if len(ids) == 0 or len(trainable) != len(ids):
            raise ValueError(f"sequence {s}: {len(ids)} tokens and {len(trainable)} trainable flags")
        siblings, path = roots, []
        for token, trained in zip(ids, trainable):
            token, trained = int(token), bool(trained)
            node = next(
                (n for n in siblings if n.token == token and not (trained and n.trained_by >= 0)), None
            )
            if node is None:
                node = _Node(token, len(path), s)
                siblings.append(node)
            if trained:
                node.trained_by = s
            path.append(node)
            siblings = node.children
        paths.append(path)
    return _lay_out(roots, paths)


def _lay_out(roots: list[_Node], paths: list[list[_Node]]) -> Tree:
    tokens: list[int] = []
    depths: list[int] = []
    ends: list[int] = []
    trained: list[bool] = []
    owners: list[int] = []

    def emit(node: _Node, copy: bool) -> int:
        slot = len(tokens)
        tokens.append(node.token)
        depths.append(node.depth)
        ends.append(-1)
        trained.append(node.trained_by >= 0 and not copy)
        owners.append(node.trained_by if node.trained_by >= 0 else node.first_seq)
        if not copy:
            node.slot = slot
        return slot

    # Iterative depth-first walk (sequences can be thousands of tokens deep).
    # A frame is (node, slot of its current copy, index of the next child).
    for root in roots:
        stack = [(root, emit(root, copy=False), 0)]
        while stack:
            node, slot, child = stack.pop()
            if child < len(node.children):
                if child > 0:  # close the previous copy's span, open a new copy for this child
                    ends[slot] = len(tokens)
                    slot = emit(node, copy=True)
                stack.append((node, slot, child + 1))
                nxt = node.children[child]
                stack.append((nxt, emit(nxt, copy=False), 0))
            else:
                ends[slot] = len(tokens)
    # An ancestor's span covers every copy of its descendants: the spans above were closed
    # when each node's last child returned, which is after all of them.
    index = [np.array([n.slot for n in path], dtype=np.int64) for path in paths]
    return Tree(
        token_ids=np.array(tokens, dtype=np.int64),
        positions=np.array(depths, dtype=np.int64),
        attend_end=np.array(ends, dtype=np.int64),
        trainable=np.array(trained, dtype=bool),
        index=index,
        owner=np.array(owners, dtype=np.int64),
    )


@dataclass
class TreeRows:
    """Trees packed first-fit into rows: the layout of a micro-batch."""

    token_ids: np.ndarray  # [rows, seq_len] int64, 0 on padding
    positions: np.ndarray  # [rows, seq_len] int64
    attend_end: np.ndarray  # [rows, seq_len] int64; padding sees itself only
    tree_ids: np.ndarray  # [rows, seq_len] int32; 0 = padding, 1.. = tree within the row
    tree_of: np.ndarray  # [rows, seq_len] int64: which tree (index into the list), -1 on padding
    slot_of: np.ndarray  # [rows, seq_len] int64: the slot within that tree, -1 on padding
    num_trees: int


def pack_trees(trees: Sequence[Tree], seq_len: int, num_rows: int) -> TreeRows:
    """A prefix of `trees` packed first-fit into `num_rows` rows of `seq_len` slots; stops
    at the first tree that fits in no row (each must be at most `seq_len` long)."""
    shape = (num_rows, seq_len)
    out = TreeRows(
        token_ids=np.zeros(shape, np.int64),
        positions=np.zeros(shape, np.int64),
        attend_end=np.broadcast_to(np.arange(1, seq_len + 1), shape).copy(),
        tree_ids=np.zeros(shape, np.int32),
        tree_of=np.full(shape, -1, np.int64),
        slot_of=np.full(shape, -1, np.int64),
        num_trees=0,
    )
    fill = [0] * num_rows
    count = [0] * num_rows
    for t, tree in enumerate(trees):
        n = len(tree)
        assert 0 < n <= seq_len, f"a tree of {n} slots for rows of {seq_len}"
        row = next((r for r in range(num_rows) if fill[r] + n <= seq_len), None)
        if row is None:
            break
        start, end = fill[row], fill[row] + n
        count[row] += 1
        out.token_ids[row, start:end] = tree.token_ids
        out.positions[row, start:end] = tree.positions
        out.attend_end[row, start:end] = tree.attend_end + start
        out.tree_ids[row, start:end] = count[row]
        out.tree_of[row, start:end] = t
        out.slot_of[row, start:end] = np.arange(n)
        fill[row] = end
        out.num_trees += 1
    return out


def label_sources(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """Per slot q: (the sequence whose values train the prediction made at q, and the
    index of the predicted token in it), or (-1, -1) where q predicts nothing: slot q
    predicts slot q + 1 when that is its child (one level deeper; see the layout rule)."""
    n = len(tree)
    seq = np.full(n, -1, np.int64)
    token = np.full(n, -1, np.int64)
    child = np.zeros(n, bool)
    child[:-1] = tree.positions[1:] == tree.positions[:-1] + 1
    seq[child] = tree.owner[1:][child[:-1]]
    token[child] = tree.positions[1:][child[:-1]]
    return seq, token


def packed_trees(trees: Sequence[Tree], seq_len: int, num_rows: int) -> PackedBatch:
    """A prefix of `trees` as packed rows with next-token labels on trained slots and their
    spans as `attend_end` (see `pack_trees` for which trees fit)."""
    rows = pack_trees(trees, seq_len, num_rows)
    real = rows.tree_of >= 0
    trained = np.zeros(rows.token_ids.shape, bool)
    for t in range(rows.num_trees):
        here = rows.tree_of == t
        trained[here] = trees[t].trainable[rows.slot_of[here]]
    labels = np.full(rows.token_ids.shape, IGNORE, np.int64)
    # Slot q predicts slot q + 1 when that is its child: one level deeper in the same tree.
    child = (rows.positions[:, 1:] == rows.positions[:, :-1] + 1) & (rows.tree_ids[:, 1:] == rows.tree_ids[:, :-1])
    on = child & trained[:, 1:] & real[:, :-1]
    labels[:, :-1] = np.where(on, rows.token_ids[:, 1:], IGNORE)
    # num_sequences counts the units packed: here trees, so a stream advances by whole trees.
    return PackedBatch(rows.token_ids, rows.positions, rows.tree_ids, labels, rows.num_trees, attend_end=rows.attend_end)
