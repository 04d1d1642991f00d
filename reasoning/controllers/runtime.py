"""What the thread controllers (APR spawn/join, parallel blocks) share.

`EpisodeRun` is the state the threads of one episode share: their list, the token
budget, the threads left and the wall-clock deadline. `generate_step` is the one way a
controller asks the engine to continue a thread: it reserves the request's room in the
token budget while the request is in flight (so concurrent siblings can never overrun
it; a sibling that finds the budget held waits for the holders to give back what they
did not use), and aborts the request in the engine when the deadline passes. `score_root` turns
the root thread into the episode's output and verdict: a root the runtime ended scores 0
with the runtime's reason in the detail. `ThreadController.run` ties them together; a
protocol's controller only says how one thread runs.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from reasoning.controllers.limits import ThreadLimits
from reasoning.episode import Episode, Thread
from reasoning.markup import MarkupError
from reasoning.tasks.base import Task
from reward import Reason, Verdict
from rollout.engine import Completion, Engine, SamplingParams

RUNTIME_REASONS = ("bad_markup", "too_deep", "too_many_threads", "budget_exhausted", "timeout")
"""Finish reasons the runtime (not the engine) gives a thread."""


@dataclass
class EpisodeRun:
    episode_id: str
    deadline: float
    max_tokens: int
    """The episode's token budget (ThreadLimits.max_total_tokens)."""
    threads_left: int
    threads: list[Thread] = field(default_factory=list)
    tokens_used: int = 0
    tokens_reserved: int = 0
    """Room held by requests in flight: the budget is never overrun by siblings."""
    _released: asyncio.Condition | None = field(default=None, repr=False)

    def new_thread(self, prompt_ids: list[int], parent: Thread | None, spawn_index: int) -> Thread:
        parent_id, depth = (-1, 0) if parent is None else (parent.thread_id, parent.depth + 1)
        thread = Thread(len(self.threads), parent_id, depth, spawn_index, prompt_ids)
        self.threads.append(thread)
        return thread

    async def reserve(self, want: int) -> int:
        """Hold up to `want` tokens of the budget; 0 once it is spent.

        While only other requests' reservations stand in the way, wait for them to
        finish: a reservation that was not used is given back, so a thread is told the
        budget is exhausted only when the tokens were really generated.
        """
        if self._released is None:
            self._released = asyncio.Condition()
        async with self._released:
            while True:
                free = self.max_tokens - self.tokens_used - self.tokens_reserved
                if free > 0:
                    granted = min(want, free)
                    self.tokens_reserved += granted
                    return granted
                if self.tokens_reserved == 0:
                    return 0
                await self._released.wait()

    async def release(self, reserved: int, used: int) -> None:
        assert self._released is not None
        async with self._released:
            self.tokens_reserved -= reserved
            self.tokens_used += used
            self._released.notify_all()


BUDGET_EXHAUSTED = "budget_exhausted"
TIMEOUT = "timeout"


async def generate_step(
    engine: Engine, thread: Thread, sampling: SamplingParams, request_id: str, run: EpisodeRun
) -> Completion | str:
    """One engine request continuing `thread` by at most `sampling.max_tokens` tokens.

    Returns the completion, or the runtime reason the thread cannot go on: `timeout` when
    the episode's wall clock runs out (the request is aborted in the engine) and
    `budget_exhausted` when the episode's tokens are spent.
    """
    if run.deadline - time.perf_counter() <= 0:
        return TIMEOUT
    reserved = await run.reserve(sampling.max_tokens)
    if reserved == 0:
        return BUDGET_EXHAUSTED
    used = 0
    try:
        timeout = run.deadline - time.perf_counter()
        if timeout <= 0:
            return TIMEOUT
        completion = await asyncio.wait_for(
            engine.generate(thread.prompt_ids + thread.output_ids, replace(sampling, max_tokens=reserved), request_id=request_id),
            timeout=timeout,
        )
        used = len(completion.token_ids)
        return completion
    except asyncio.TimeoutError:
        engine.abort(request_id)
        return TIMEOUT
    finally:
        await run.release(reserved, used)


async def score_root(task: Task, problem: Any, root: Thread, tokenizer: Any) -> tuple[str, Verdict]:
    """The root's decoded output and its verdict: 0 with the runtime's reason when the
    runtime ended the root, else the task's score (run off the event loop)."""
    output = tokenizer.decode(root.output_ids, skip_special_tokens=True)
    if root.finish_reason in RUNTIME_REASONS:
        return output, Verdict.fail(Reason.NO_ANSWER, f"root thread ended by the runtime: {root.finish_reason}")
    return output, await asyncio.to_thread(task.score, problem, output)


class ThreadController:
    """Base of the thread controllers: runs the root thread of an episode and scores it."""

    mode = ""

    def __init__(self, engine: Engine, tokenizer: Any, task: Task, limits: ThreadLimits):
        self.engine = engine
        self.tokenizer = tokenizer
        self.task = task
        self.limits = limits

    async def run(self, problem: Any, episode_id: str | None = None) -> Episode:
        episode_id = episode_id or problem.id
        start = time.perf_counter()
        limits = self.limits
        run = EpisodeRun(episode_id, start + limits.max_wall_s, limits.max_total_tokens, limits.max_threads - 1)
        root = run.new_thread(self.task.prompt_ids(problem, self.tokenizer), None, -1)
        await self._run_thread(root, run)
        output, verdict = await score_root(self.task, problem, root, self.tokenizer)
        elapsed = time.perf_counter() - start
        return Episode(episode_id, problem, self.mode, run.threads, output, verdict, elapsed, self.task.name)

    async def _run_thread(self, thread: Thread, run: EpisodeRun) -> None:
        raise NotImplementedError

    def _claim_fork(
        self, parent: Thread, segment: list[int], run: EpisodeRun, parse: Callable[[str, int], list[str]]
    ) -> tuple[list[str], int] | str:
        """Parse the fork markup `segment` ends with and claim its threads.

        Returns (the threads' texts, the parent's spawn index for them), or the runtime
        reason the parent cannot fork: too deep, bad markup, or too many threads.
        """
        if parent.depth >= self.limits.max_depth:
            return "too_deep"
        try:
            texts = parse(self.tokenizer.decode(segment, skip_special_tokens=True), self.limits.max_children)
        except MarkupError:
            return "bad_markup"
        if len(texts) > run.threads_left:
            return "too_many_threads"
        run.threads_left -= len(texts)
        parent.num_spawns += 1
        return texts, parent.num_spawns - 1
