"""The rollout worker's plain core: engine + controller + verifier, one group at a time.

A group is k episodes of one problem, sampled concurrently (the engine batches them and
shares their prompt prefix) with a seed per episode derived from the group id, so a
re-issued group samples the same way. Each finished group becomes one Arrow record
batch of the episode table (reasoning/episode_table.py) - the form episodes travel in
through Ray's object store and are appended to the Parquet rollout log - plus one
`EpisodeMeta` per episode for the stream buffer (actors/stream_buffer.py).

New weights arrive through `load_weights` and land in the engine between decode steps;
requests in flight continue and their later tokens carry the new version, which is what
the buffer's staleness bound reads (`min_version`: the oldest version of any generated
token). The Ray actor in actors/ wraps this class; nothing here imports ray.
"""
from __future__ import annotations

import asyncio
import zlib
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from actors.stream_buffer import EpisodeMeta
from reasoning.controllers.apr import AprController
from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.sequential import run_sequential
from reasoning.episode import INSERTED_VERSION, Episode
from reasoning.episode_table import to_table
from rollout.engine import Engine, SamplingParams

MODES = ("sequential", "apr")


class RolloutCore:
    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        *,
        mode: str,
        group_size: int,
        sampling: SamplingParams,
        limits: ThreadLimits,
    ):
        if mode not in MODES:
            raise ValueError(f"rollout mode {mode!r}: choose one of {', '.join(MODES)}")
        self.engine = engine
        self.tokenizer = tokenizer
        self.mode = mode
        self.group_size = group_size
        self.sampling = sampling
        self.limits = limits

    async def run_group(self, problem: Any, group_id: str) -> list[Episode]:
        """k episodes of `problem`, concurrently; episode ids are `group_id/i`."""
        return list(await asyncio.gather(*(self._episode(problem, f"{group_id}/{i}") for i in range(self.group_size))))

    async def evaluate(self, problems: Sequence[Any]) -> dict[str, float]:
        """Greedy accuracy and mean tokens on `problems`, with the weights in use now."""
        greedy = replace(self.sampling, temperature=0.0, seed=None)
        if self.mode == "apr":
            controller = AprController(self.engine, self.tokenizer, greedy, self.limits)
            runs = [controller.run(p, f"eval/{p.id}") for p in problems]
        else:
            runs = [run_sequential(self.engine, self.tokenizer, p, greedy, episode_id=f"eval/{p.id}") for p in problems]
        episodes = await asyncio.gather(*runs)
        return {
            "accuracy": sum(e.verdict.is_correct for e in episodes) / len(episodes),
            "mean_total_tokens": sum(e.total_tokens for e in episodes) / len(episodes),
            "version": self.engine.version,
        }

    async def load_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        await self.engine.update_weights(named_arrays, version)

    async def _episode(self, problem: Any, episode_id: str) -> Episode:
        sampling = replace(self.sampling, seed=zlib.crc32(episode_id.encode()))
        if self.mode == "apr":
            return await AprController(self.engine, self.tokenizer, sampling, self.limits).run(problem, episode_id)
        return await run_sequential(self.engine, self.tokenizer, problem, sampling, episode_id=episode_id)


def group_record_batch(episodes: Sequence[Episode]) -> pa.RecordBatch:
    """The episodes' thread rows as one Arrow record batch of the episode table."""
    rows = [row for episode in episodes for row in episode.rows()]
    return to_table(rows).combine_chunks().to_batches()[0]


def episode_meta(episode: Episode, group_id: str, sample_index: int, admitted_version: int) -> EpisodeMeta:
    """What the stream buffer needs to know of an episode (its oldest and newest token versions).

    An episode that generated nothing (a request the engine refused) is dated by the
    version at which it was admitted.
    """
    versions = [v for t in episode.threads for v in t.versions if v != INSERTED_VERSION]
    return EpisodeMeta(
        group_id=group_id,
        sample_index=sample_index,
        num_tokens=episode.total_tokens,
        min_version=min(versions, default=admitted_version),
        max_version=max(versions, default=admitted_version),
        reward=episode.verdict.reward,
    )
