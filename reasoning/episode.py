"""Episodes: the tree of threads one problem produced, with its reward and cost metrics.

A thread's output interleaves tokens it generated (trainable, with the behaviour
logprob and policy version of each) and tokens the runtime inserted, such as an APR join
(observed: not trained, logprob 0, version -1). A child records which spawn of its
parent (`spawn_index`) started it, which is what the critical path needs: a thread's
critical path is its own generated tokens plus, for each of its spawns, the longest
critical path among the children of that spawn, since those run side by side. A
multi-path episode has several roots (independent samples of one problem, all run at
once); its critical path is the longest of theirs.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from reward import Verdict

INSERTED_VERSION = -1


@dataclass
class Thread:
    thread_id: int
    parent_id: int  # -1 for the root
    depth: int
    spawn_index: int  # which spawn of the parent started this thread; -1 for the root
    prompt_ids: list[int]
    output_ids: list[int] = field(default_factory=list)
    trainable: list[bool] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    finish_reason: str = ""
    """The engine's (stop_token, length, abort, error) or the runtime's
    (bad_markup, too_deep, too_many_threads, budget_exhausted, timeout)."""
    num_spawns: int = 0

    def add_generated(self, token_ids: list[int], logprobs: list[float], versions: list[int]) -> None:
        self.output_ids += token_ids
        self.trainable += [True] * len(token_ids)
        self.logprobs += logprobs
        self.versions += versions

    def add_inserted(self, token_ids: list[int]) -> None:
        self.output_ids += token_ids
        self.trainable += [False] * len(token_ids)
        self.logprobs += [0.0] * len(token_ids)
        self.versions += [INSERTED_VERSION] * len(token_ids)

    @property
    def num_generated(self) -> int:
        return sum(self.trainable)


def critical_path(threads: list[tuple[int, int, int, int]]) -> int:
    """The critical path of a thread tree given as (thread_id, parent_id, spawn_index,
    generated tokens) per thread: a thread's own tokens plus, for each of its spawns,
    the longest critical path among that spawn's children; the longest over the roots."""
    children: dict[int, dict[int, list[int]]] = {}
    generated = {}
    for thread_id, parent_id, spawn_index, num_generated in threads:
        generated[thread_id] = num_generated
        if parent_id >= 0:
            children.setdefault(parent_id, {}).setdefault(spawn_index, []).append(thread_id)

    def path(thread_id: int) -> int:
        spawns = children.get(thread_id, {})
        return generated[thread_id] + sum(max(path(c) for c in group) for group in spawns.values())

    # Several roots (independent multi-path samples) run side by side.
    return max(path(thread_id) for thread_id, parent_id, _, _ in threads if parent_id < 0)


@dataclass
class Episode:
    episode_id: str
    problem: Any
    """The task's problem (reasoning/tasks/): a frozen dataclass with `id` and `key`."""
    mode: str
    threads: list[Thread]
    output: str
    """The root thread's decoded output (joins included), which the verifier scores."""
    verdict: Verdict
    latency_s: float
    task: str = ""
    """The task's name (reasoning/tasks/registry.py)."""
    group_id: str = ""
    """The group the learner normalises advantages over (the k samples of one ticket);
    empty: the episode is its own group."""

    @property
    def root(self) -> Thread:
        return self.threads[0]

    @property
    def total_tokens(self) -> int:
        """Generated tokens over all threads (what the engine computed)."""
        return sum(t.num_generated for t in self.threads)

    @property
    def critical_path_tokens(self) -> int:
        return critical_path([(t.thread_id, t.parent_id, t.spawn_index, t.num_generated) for t in self.threads])

    @property
    def depth(self) -> int:
        return max(t.depth for t in self.threads)

    @property
    def num_threads(self) -> int:
        return len(self.threads)

    @property
    def finish_reason(self) -> str:
        return self.root.finish_reason

    def rows(self) -> list[dict[str, Any]]:
        """Rows of the episode table, version 2 (reasoning/episode_table.py), one per thread."""
        problem = json.dumps(dataclasses.asdict(self.problem), sort_keys=True, ensure_ascii=False)
        total, critical = self.total_tokens, self.critical_path_tokens
        return [
            {
                "episode_id": self.episode_id,
                "group_id": self.group_id or self.episode_id,
                "task": self.task,
                "problem_id": self.problem.id,
                "problem": problem,
                "thread_id": t.thread_id,
                "parent_id": t.parent_id,
                "spawn_index": t.spawn_index,
                "depth": t.depth,
                "role": "root" if t.parent_id < 0 else "child",
                "token_ids": t.prompt_ids + t.output_ids,
                "num_prompt_tokens": len(t.prompt_ids),
                "trainable": [False] * len(t.prompt_ids) + t.trainable,
                "logprobs": t.logprobs,
                "versions": t.versions,
                "finish_reason": t.finish_reason,
                "reward": self.verdict.reward,
                "reason": self.verdict.reason.value,
                "episode_total_tokens": total,
                "episode_critical_path_tokens": critical,
            }
            for t in self.threads
        ]
