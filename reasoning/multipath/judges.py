"""Cheap equivalence judges for partial traces, and the AUROC that says how good one is.

The n-gram judge scores two partial traces by the Jaccard similarity of their sets of
token n-grams: 1.0 for traces that explore the same steps, near 0 for unrelated ones.
DeepPrune trains a judge model; this one costs nothing and needs no training, and its
AUROC for predicting that two paths end with the same answer is measured by
`treadle bench prune`.
"""
from __future__ import annotations

from typing import Sequence


def ngrams(tokens: Sequence[int], n: int) -> set[tuple[int, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def ngram_similarity(a: Sequence[int], b: Sequence[int], n: int) -> float:
    return jaccard(ngrams(a, n), ngrams(b, n))


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half).

    None when there are no positives or no negatives.
    """
    positives = [s for s, y in zip(scores, labels) if y]
    negatives = [s for s, y in zip(scores, labels) if not y]
    if not positives or not negatives:
        return None
    # Rank-based (Mann-Whitney U), O(n log n).
    ordered = sorted((s, y) for s, y in zip(scores, labels))
    rank_sum, i = 0.0, 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        average_rank = (i + 1 + j) / 2
        rank_sum += average_rank * sum(1 for _, y in ordered[i:j] if y)
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
