"""The APR spawn/join controller: threads that fork children and are joined with their results.

A thread generates until it writes `</spawn>` (a stop token) or ends. At a spawn the
runtime parses the block (reasoning/protocols/apr.py), starts one child per `<thread>`
(each prompted with the parent's prompt plus its text), awaits them all concurrently (so
the engine batches them and shares their common prompt prefix), appends the join to the
parent as observed tokens and lets the parent continue. A continuation is a new engine
request whose prompt is everything so far; prefix caching makes that cheap.

Whatever the model writes, the episode stays bounded (reasoning/controllers/limits.py):
a malformed spawn, a spawn too deep or too wide, too many threads, the token budget or
the wall clock ends the offending thread with a finish reason; a child that ends that
way returns `Fail` to its parent, and a root that ends that way scores 0 with that reason.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, replace
from typing import Any

from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.sequential import problem_prompt_ids
from reasoning.countdown.problems import Problem
from reasoning.episode import Episode, Thread
from reasoning.markup import SPAWN_CLOSE, SPAWN_OPEN
from reasoning.protocols.apr import MarkupError, child_result, parse_spawn, render_join
from reward import Reason, Verdict, verify_countdown
from rollout.engine import Engine, FinishReason, SamplingParams

RUNTIME_REASONS = ("bad_markup", "too_deep", "too_many_threads", "budget_exhausted", "timeout")


@dataclass
class _Budget:
    tokens_left: int
    deadline: float
    threads_left: int


class AprController:
    """Runs APR episodes on an engine; one instance serves many concurrent episodes."""

    def __init__(self, engine: Engine, tokenizer: Any, sampling: SamplingParams, limits: ThreadLimits):
        self.engine = engine
        self.tokenizer = tokenizer
        self.limits = limits
        self.spawn_close_id = tokenizer.convert_tokens_to_ids(SPAWN_CLOSE)
        stops = tuple(dict.fromkeys((*sampling.stop_token_ids, self.spawn_close_id)))
        self.sampling = replace(sampling, stop_token_ids=stops)

    async def run(self, problem: Problem, episode_id: str | None = None) -> Episode:
        episode_id = episode_id or problem.id
        start = time.perf_counter()
        limits = self.limits
        budget = _Budget(limits.max_total_tokens, start + limits.max_wall_s, limits.max_threads - 1)
        threads: list[Thread] = []
        ids = itertools.count()
        root = self._new_thread(threads, ids, problem_prompt_ids(problem, self.tokenizer), -1, 0, -1)
        await self._run_thread(root, threads, ids, budget, episode_id)
        output = self.tokenizer.decode(root.output_ids, skip_special_tokens=True)
        if root.finish_reason in RUNTIME_REASONS:
            verdict = Verdict.fail(Reason.NO_ANSWER, f"root thread ended by the runtime: {root.finish_reason}")
        else:
            verdict = verify_countdown(problem.numbers, problem.target, output)
        return Episode(episode_id, problem, "apr", threads, output, verdict, time.perf_counter() - start)

    @staticmethod
    def _new_thread(threads: list[Thread], ids, prompt_ids: list[int], parent_id: int, depth: int, spawn_index: int) -> Thread:
        thread = Thread(next(ids), parent_id, depth, spawn_index, prompt_ids)
        threads.append(thread)
        return thread

    async def _run_thread(self, thread: Thread, threads: list[Thread], ids, budget: _Budget, episode_id: str) -> None:
        limits = self.limits
        while True:
            room = min(limits.max_thread_tokens - thread.num_generated, budget.tokens_left)
            if room <= 0:
                thread.finish_reason = "budget_exhausted" if budget.tokens_left <= 0 else FinishReason.LENGTH.value
                return
            request_id = f"{episode_id}/{thread.thread_id}/{thread.num_spawns}"
            sampling = replace(self.sampling, max_tokens=room)
            budget.tokens_left -= room  # reserved, so concurrent siblings never overrun the budget
            try:
                completion = await asyncio.wait_for(
                    self.engine.generate(thread.prompt_ids + thread.output_ids, sampling, request_id=request_id),
                    timeout=max(budget.deadline - time.perf_counter(), 0.0),
                )
            except asyncio.TimeoutError:
                self.engine.abort(request_id)
                thread.finish_reason = "timeout"
                return
            finally:
                budget.tokens_left += room
            thread.add_generated(completion.token_ids, completion.logprobs, completion.versions)
            budget.tokens_left -= len(completion.token_ids)
            spawned = completion.token_ids[-1:] == [self.spawn_close_id]
            if not spawned or completion.finish_reason is not FinishReason.STOP_TOKEN:
                thread.finish_reason = completion.finish_reason.value
                return
            reason = await self._spawn(thread, threads, ids, budget, episode_id)
            if reason is not None:
                thread.finish_reason = reason
                return

    async def _spawn(self, parent: Thread, threads: list[Thread], ids, budget: _Budget, episode_id: str) -> str | None:
        """Run the children of the spawn the parent just wrote; a runtime reason if it cannot."""
        if parent.depth >= self.limits.max_depth:
            return "too_deep"
        text = self.tokenizer.decode(parent.output_ids[-self._spawn_window(parent) :], skip_special_tokens=True)
        try:
            children_text = parse_spawn(text, self.limits.max_children)
        except MarkupError:
            return "bad_markup"
        if len(children_text) > budget.threads_left:
            return "too_many_threads"
        budget.threads_left -= len(children_text)
        spawn_index = parent.num_spawns
        parent.num_spawns += 1
        children = [
            self._new_thread(
                threads, ids, parent.prompt_ids + self.tokenizer.encode(child + "\n"),
                parent.thread_id, parent.depth + 1, spawn_index,
            )  # fmt: skip
            for child in children_text
        ]
        await asyncio.gather(*(self._run_thread(c, threads, ids, budget, episode_id) for c in children))
        results = []
        for child in children:
            output = self.tokenizer.decode(child.output_ids, skip_special_tokens=True)
            ok = child.finish_reason not in RUNTIME_REASONS
            results.append(child_result(output) if ok else None)
        parent.add_inserted(self.tokenizer.encode(render_join(results)))
        return None

    def _spawn_window(self, thread: Thread) -> int:
        """How many trailing output tokens hold the last spawn block (from its `<spawn>`)."""
        open_id = self.tokenizer.convert_tokens_to_ids(SPAWN_OPEN)
        for back, token in enumerate(reversed(thread.output_ids), start=1):
            if token == open_id:
                return back
        return len(thread.output_ids)
