"""Per-episode means of per-token values, inside one tensor or across micro-batches and ranks.

A sequence-level quantity (GSPO's ratio, the geometric-mean behaviour ratio of
sequence-level masking) is a mean over every trained token of one episode: all threads
of its tree. An episode's threads may land in several micro-batches (the `rows` layout
sorts threads by length; a big tree overflows a micro-batch) and so on several
data-parallel ranks. `episode_token_mean` covers the case where one tensor holds all of
an episode's tokens; `EpisodeIndex` tells whether that holds for a batch, and which
micro-batches an update must look at when it does not; `episode_means` adds the sums of
several micro-batches (and, through `reduce`, of the ranks) into exact means.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch


def episode_token_mean(values: torch.Tensor, mask: torch.Tensor, episode_ids: torch.Tensor) -> torch.Tensor:
    """Each token's episode's mean of `values` over its trained tokens (`mask` > 0), per token [N];
    0 where the episode has no trained token here. No gradient flows through the mean."""
    v, m = values.detach().double(), mask.detach().double()
    num_episodes = int(episode_ids.max().item()) + 1 if episode_ids.numel() else 0
    sums = v.new_zeros(num_episodes).index_add(0, episode_ids, v * m)
    counts = v.new_zeros(num_episodes).index_add(0, episode_ids, m)
    return (sums / counts.clamp(min=1.0))[episode_ids].to(values.dtype)


class EpisodeIndex:
    """Which episodes have trained tokens in which micro-batch (every rank holds the whole batch,
    so every rank computes the same index and takes the same branches)."""

    def __init__(self, loss_masks: Sequence[np.ndarray], episode_index: Sequence[np.ndarray], num_episodes: int):
        self.num_episodes = num_episodes
        self.episodes = [set(np.unique(e[m > 0]).tolist()) for m, e in zip(loss_masks, episode_index)]
        counts = np.zeros(num_episodes, dtype=np.float64)
        for m, e in zip(loss_masks, episode_index):
            np.add.at(counts, e[m > 0], 1.0)
        self.num_tokens = counts
        seen: dict[int, int] = {}
        for members in self.episodes:
            for episode in members:
                seen[episode] = seen.get(episode, 0) + 1
        self.spans = any(n > 1 for n in seen.values())
        """Some episode has trained tokens in more than one micro-batch."""

    def touching(self, chunk: Sequence[int]) -> list[int]:
        """The micro-batches holding a token of an episode that has one in `chunk`."""
        wanted = set().union(*(self.episodes[int(i)] for i in chunk))
        return [i for i, members in enumerate(self.episodes) if members & wanted]


def episode_means(
    values: Mapping[int, torch.Tensor],
    loss_masks: Sequence[np.ndarray],
    episode_index: Sequence[np.ndarray],
    index: EpisodeIndex,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-episode means [E] (float64, CPU) of the per-token `values` {micro-batch: [N]} over
    trained tokens. `reduce` sums the partial sums over ranks (each rank passes its own
    micro-batches); the token counts come from the whole batch, which every rank holds.
    Exact for every episode whose micro-batches are all among the ones given (over all ranks)."""
    sums = torch.zeros(index.num_episodes, dtype=torch.float64)
    for i, v in values.items():
        on = torch.from_numpy(loss_masks[i].reshape(-1) > 0)
        ids = torch.from_numpy(episode_index[i].reshape(-1))[on]
        sums.index_add_(0, ids, v.detach().reshape(-1).cpu().double()[on])
    if reduce is not None:
        reduce(sums)
    return sums / torch.from_numpy(np.maximum(index.num_tokens, 1.0))
