"""The sequential controller: one thread, prompt in, one completion out.

Used for SoS+ models and any model that answers in one sequence, on any task
(reasoning/tasks.py). For Countdown the prompt is the problem line `target|numbers` and a
newline after <bos>, exactly as in the SFT traces.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from reasoning.countdown.problems import Problem
from reasoning.episode import Episode, Thread
from reward import verify_countdown
from reward.trace_steps import render_problem
from rollout.engine import Engine, SamplingParams


def problem_prompt_ids(problem: Problem, tokenizer: Any) -> list[int]:
    return [tokenizer.bos_token_id, *tokenizer.encode(render_problem(problem.target, problem.numbers) + "\n")]


async def run_sequential(
    engine: Engine,
    tokenizer: Any,
    problem: Any,
    sampling: SamplingParams,
    episode_id: str | None = None,
    task: Any = None,
) -> Episode:
    """One episode of `problem`; `task` (reasoning/tasks.py) defaults to Countdown."""
    episode_id = episode_id or problem.id
    start = time.perf_counter()
    prompt_ids = task.prompt_ids(problem, tokenizer) if task is not None else problem_prompt_ids(problem, tokenizer)
    thread = Thread(0, -1, 0, -1, prompt_ids)
    completion = await engine.generate(thread.prompt_ids, sampling, request_id=f"{episode_id}/0")
    thread.add_generated(completion.token_ids, completion.logprobs, completion.versions)
    thread.finish_reason = completion.finish_reason.value
    output = tokenizer.decode(completion.token_ids, skip_special_tokens=True)
    return Episode(
        episode_id=episode_id,
        problem=problem,
        mode="sequential",
        threads=[thread],
        output=output,
        verdict=(
            await asyncio.to_thread(task.verify, problem, output)
            if task is not None
            else verify_countdown(problem.numbers, problem.target, output)
        ),
        latency_s=time.perf_counter() - start,
    )
