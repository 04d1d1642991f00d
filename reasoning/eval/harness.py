"""Run a controller over problems concurrently and summarise the episodes.

`summary.json` fields: accuracy, num_problems, accuracy_unseen and num_unseen (over
problems whose key (the task's problem identity, reasoning/tasks/) is not among the
checkpoint's training problems; null when the checkpoint does not record them), mean_total_tokens,
mean_critical_path_tokens, acceleration_ratio (mean total tokens / mean critical-path
tokens: 1.0 for a sequential model, the speedup in token latency that parallel threads buy
when they run side by side), mean_latency_s, and the count of each verdict reason.
"""
from __future__ import annotations

import asyncio
import dataclasses
import collections
import statistics
from typing import Any, Awaitable, Callable, Hashable, Iterable

from reasoning.episode import Episode

Controller = Callable[[Any], Awaitable[Episode]]


async def run_all(problems: list[Any], controller: Controller, max_concurrent: int, progress=None) -> list[Episode]:
    """Every problem through `controller`, at most `max_concurrent` at a time, in input order."""
    gate = asyncio.Semaphore(max_concurrent)

    async def one(problem: Any) -> Episode:
        async with gate:
            episode = await controller(problem)
        if progress is not None:
            progress(1)
        return episode

    return list(await asyncio.gather(*(one(p) for p in problems)))


def summarize(episodes: list[Episode], trained_keys: set[Hashable] | None) -> dict[str, Any]:
    assert episodes, "nothing to summarise"
    correct = [e.verdict.is_correct for e in episodes]
    summary: dict[str, Any] = {
        "accuracy": _mean(correct),
        "num_problems": len(episodes),
        "accuracy_unseen": None,
        "num_unseen": None,
        "mean_total_tokens": _mean(o.total_tokens for o in episodes),
        "mean_critical_path_tokens": _mean(o.critical_path_tokens for o in episodes),
        "acceleration_ratio": sum(o.total_tokens for o in episodes) / max(sum(o.critical_path_tokens for o in episodes), 1),
        "mean_reward": _mean(o.verdict.reward for o in episodes),
        "mean_latency_s": _mean(o.latency_s for o in episodes),
        "mean_threads": _mean(o.num_threads for o in episodes),
        "mean_depth": _mean(o.depth for o in episodes),
        "reasons": dict(collections.Counter(o.verdict.reason.value for o in episodes).most_common()),
        "finish_reasons": dict(collections.Counter(o.finish_reason for o in episodes).most_common()),
    }
    if trained_keys is not None:
        unseen = [ok for o, ok in zip(episodes, correct) if o.problem.key not in trained_keys]
        summary["num_unseen"] = len(unseen)
        summary["accuracy_unseen"] = _mean(unseen) if unseen else None
    return summary


def episode_record(episode: Episode) -> dict[str, Any]:
    """One line of results.jsonl."""
    return {
        **dataclasses.asdict(episode.problem),  # the task's problem: id and its fields
        "reward": episode.verdict.reward,
        "reason": episode.verdict.reason.value,
        "finish_reason": episode.finish_reason,
        "total_tokens": episode.total_tokens,
        "critical_path_tokens": episode.critical_path_tokens,
        "num_threads": episode.num_threads,
        "depth": episode.depth,
        "latency_s": round(episode.latency_s, 4),
        "output": episode.output,
    }


def _mean(values: Iterable[float]) -> float:
    return float(statistics.fmean(values))
