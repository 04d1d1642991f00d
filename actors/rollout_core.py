"""The rollout worker's plain core: task + engine + controller, one group at a time.

The walk of one rollout: the buffer's ticket g picks problem g (mod the problem list:
the ticket counter is the data cursor, so a resumed run goes on where its checkpoint
stopped) -> `Task.prompt_ids` -> `Controller.run` (reasoning/controllers/factory.py) ->
`Episode` (scored by the task) -> version-2 rows of the episode table as one Arrow
record batch -> the buffer, with one `EpisodeMeta` per episode.

A group is k episodes of one problem under one ticket, named `group_id` =
"<problem id>#<ticket>" (a later epoch draws the same problem under another group),
sampled concurrently (the engine batches them and shares their prompt prefix) with a
seed per episode derived from its id, so a re-issued group samples the same way.

New weights arrive through `load_weights` and land in the engine between decode steps;
requests in flight continue and their later tokens carry the new version, which is what
the buffer's staleness bound reads (`min_version`: the oldest version of any generated
token). The Ray actor in actors/actors.py wraps this class; nothing here imports ray.
"""
from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from actors.stream_buffer import EpisodeMeta
from learner.lora_merge import AdapterMerger, is_adapter_update
from reasoning.controllers.factory import THREAD_MODES, make_controller
from reasoning.controllers.limits import ThreadLimits
from reasoning.episode import INSERTED_VERSION, Episode
from reasoning.episode_table import to_table
from reasoning.tasks.base import Task
from rollout.engine import Engine, SamplingParams

MODES = THREAD_MODES


@dataclass
class Group:
    """One ticket's finished group: its episodes, their rows as one Arrow batch, and
    (episode id, meta) pairs for the buffer."""

    group_id: str
    episodes: list[Episode]
    batch: pa.RecordBatch
    metas: list[tuple[str, EpisodeMeta]]


def ticket_problem(problems: Sequence[Any], ticket_id: int) -> tuple[Any, str]:
    """The problem ticket `ticket_id` samples and the group's id."""
    problem = problems[ticket_id % len(problems)]
    return problem, f"{problem.id}#{ticket_id}"


class RolloutCore:
    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        task: Task,
        *,
        mode: str,
        group_size: int,
        sampling: SamplingParams,
        limits: ThreadLimits,
        adapters: AdapterMerger | None = None,
    ):
        """`adapters`: a LoRA run's merger (learner/lora_merge.py), which turns the adapter
        updates the learner publishes into the merged matrices the engine loads."""
        if mode not in MODES:
            raise ValueError(f"rollout mode {mode!r}: choose one of {', '.join(MODES)}")
        self.engine = engine
        self.tokenizer = tokenizer
        self.task = task
        self.mode = mode
        self.group_size = group_size
        self.sampling = sampling
        self.limits = limits
        self.adapters = adapters
        task.check(tokenizer)  # once, here: the controllers made per episode skip it
        self._controller(sampling)  # the protocol checks its tags now, not mid-run

    async def generate(self, problems: Sequence[Any], ticket_id: int, admitted_version: int) -> Group:
        """The group of ticket `ticket_id`, ready for the buffer."""
        problem, group_id = ticket_problem(problems, ticket_id)
        episodes = await self.run_group(problem, group_id)
        metas = [(e.episode_id, episode_meta(e, group_id, i, admitted_version)) for i, e in enumerate(episodes)]
        return Group(group_id, episodes, group_record_batch(episodes), metas)

    async def run_group(self, problem: Any, group_id: str) -> list[Episode]:
        """k episodes of `problem`, concurrently; episode ids are `group_id/i`."""
        return list(await asyncio.gather(*(self._episode(problem, group_id, i) for i in range(self.group_size))))

    async def evaluate(self, problems: Sequence[Any], trained_keys: set | None = None) -> dict[str, Any]:
        """Greedy accuracy and mean tokens on `problems`, with the weights in use now;
        `accuracy_unseen` over those whose key is not in `trained_keys` (None: not computed)."""
        controller = self._controller(replace(self.sampling, temperature=0.0, seed=None))
        episodes = await asyncio.gather(*(controller.run(p, f"eval/{p.id}") for p in problems))
        correct = [e.verdict.is_correct for e in episodes]
        result: dict[str, Any] = {
            "accuracy": sum(correct) / len(episodes),
            "mean_reward": sum(e.verdict.reward for e in episodes) / len(episodes),
            "mean_total_tokens": sum(e.total_tokens for e in episodes) / len(episodes),
            "mean_critical_path_tokens": sum(e.critical_path_tokens for e in episodes) / len(episodes),
            "version": self.engine.version,
        }
        if trained_keys is not None:
            unseen = [ok for e, ok in zip(episodes, correct) if e.problem.key not in trained_keys]
            result["num_unseen"] = len(unseen)
            result["accuracy_unseen"] = sum(unseen) / len(unseen) if unseen else None
        return result

    async def load_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        if is_adapter_update(named_arrays):
            if self.adapters is None:
                raise ValueError("an adapter update reached a worker without a LoRA merger (model.lora.rank is 0 here)")
            named_arrays = await asyncio.to_thread(self.adapters.merge, named_arrays)
        await self.engine.update_weights(named_arrays, version)

    def _controller(self, sampling: SamplingParams):
        return make_controller(self.mode, self.engine, self.tokenizer, self.task, sampling, self.limits, check_task=False)

    async def _episode(self, problem: Any, group_id: str, index: int) -> Episode:
        episode_id = f"{group_id}/{index}"
        controller = self._controller(replace(self.sampling, seed=zlib.crc32(episode_id.encode())))
        episode = await controller.run(problem, episode_id)
        episode.group_id = group_id
        return episode


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
        reason=episode.verdict.reason.value,
        critical_path_tokens=episode.critical_path_tokens,
    )
