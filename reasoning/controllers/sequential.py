"""The sequential controller: one thread, prompt in, one completion out.

Used for SoS+ models and any model that answers in one sequence, on any task: the task
builds the prompt (reasoning/tasks/) and scores the decoded output.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from reasoning.episode import Episode, Thread
from reasoning.tasks.base import Task
from rollout.engine import Engine, SamplingParams


class SequentialController:
    """Runs one-thread episodes on an engine; one instance serves many concurrent episodes."""

    mode = "sequential"

    def __init__(self, engine: Engine, tokenizer: Any, task: Task, sampling: SamplingParams):
        self.engine = engine
        self.tokenizer = tokenizer
        self.task = task
        self.sampling = sampling

    async def run(self, problem: Any, episode_id: str | None = None) -> Episode:
        episode_id = episode_id or problem.id
        start = time.perf_counter()
        thread = Thread(0, -1, 0, -1, self.task.prompt_ids(problem, self.tokenizer))
        completion = await self.engine.generate(thread.prompt_ids, self.sampling, request_id=f"{episode_id}/0")
        thread.add_generated(completion.token_ids, completion.logprobs, completion.versions)
        thread.finish_reason = completion.finish_reason.value
        output = self.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        verdict = await asyncio.to_thread(self.task.score, problem, output)
        return Episode(episode_id, problem, self.mode, [thread], output, verdict, time.perf_counter() - start, self.task.name)
