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


@dataclass
class Episode:
    episode_id: str
    problem: Any
    """The task's problem (reasoning/tasks.py): a Countdown Problem or a MathProblem."""
    mode: str
    threads: list[Thread]
    output: str
    """The root thread's decoded output (joins included), which the verifier scores."""
    verdict: Verdict
    latency_s: float

    @property
    def root(self) -> Thread:
        return self.threads[0]

    @property
    def total_tokens(self) -> int:
        """Generated tokens over all threads (what the engine computed)."""
        return sum(t.num_generated for t in self.threads)

    @property
    def critical_path_tokens(self) -> int:
        children: dict[int, dict[int, list[Thread]]] = {}
        for t in self.threads:
            if t.parent_id < 0:
                continue
            children.setdefault(t.parent_id, {}).setdefault(t.spawn_index, []).append(t)

        def path(thread: Thread) -> int:
            spawns = children.get(thread.thread_id, {})
            return thread.num_generated + sum(max(path(c) for c in group) for group in spawns.values())

        # Several roots (independent multi-path samples) run side by side.
        return max(path(t) for t in self.threads if t.parent_id < 0)

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
        """Rows of the episode table (reasoning/episode_table.py), one per thread."""
        return [
            {
                "episode_id": self.episode_id,
                "problem_id": self.problem.id,
                "numbers": list(self.problem.numbers),
                "target": self.problem.target,
                "thread_id": t.thread_id,
                "parent_id": t.parent_id,
                "depth": t.depth,
                "role": "root" if t.parent_id < 0 else "child",
                "token_ids": t.prompt_ids + t.output_ids,
                "num_prompt_tokens": len(t.prompt_ids),
                "trainable": [False] * len(t.prompt_ids) + t.trainable,
                "logprobs": t.logprobs,
                "versions": t.versions,
                "finish_reason": t.finish_reason,
                "reward": self.verdict.reward,
            }
            for t in self.threads
        ]
