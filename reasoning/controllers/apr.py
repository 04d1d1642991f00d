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
from dataclasses import replace
from typing import Any

from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.runtime import RUNTIME_REASONS, EpisodeRun, ThreadController, generate_step
from reasoning.episode import Thread
from reasoning.markup import APR_TAGS, SPAWN_CLOSE, tag_token_ids
from reasoning.protocols.apr import child_result, parse_spawn, render_join
from reasoning.tasks.base import Task
from rollout.engine import Engine, FinishReason, SamplingParams


class AprController(ThreadController):
    """Runs APR episodes on an engine; one instance serves many concurrent episodes."""

    mode = "apr"

    def __init__(self, engine: Engine, tokenizer: Any, task: Task, sampling: SamplingParams, limits: ThreadLimits):
        super().__init__(engine, tokenizer, task, limits)
        # A stop on `</spawn>` fires only if it is one token: refuse a vocabulary without the tags.
        self.spawn_close_id = tag_token_ids(tokenizer, APR_TAGS)[SPAWN_CLOSE]
        stops = tuple(dict.fromkeys((*sampling.stop_token_ids, self.spawn_close_id)))
        self.sampling = replace(sampling, stop_token_ids=stops)

    async def _run_thread(self, thread: Thread, run: EpisodeRun) -> None:
        limits = self.limits
        segment_start = 0  # where the tokens generated since the last join begin
        while True:
            room = min(self.sampling.max_tokens, limits.max_thread_tokens) - thread.num_generated
            if room <= 0:
                thread.finish_reason = FinishReason.LENGTH.value
                return
            request_id = f"{run.episode_id}/{thread.thread_id}/{thread.num_spawns}"
            completion = await generate_step(self.engine, thread, replace(self.sampling, max_tokens=room), request_id, run)
            if isinstance(completion, str):  # the runtime's reason: timeout or budget_exhausted
                thread.finish_reason = completion
                return
            thread.add_generated(completion.token_ids, completion.logprobs, completion.versions)
            spawned = completion.token_ids[-1:] == [self.spawn_close_id]
            if not spawned or completion.finish_reason is not FinishReason.STOP_TOKEN:
                thread.finish_reason = completion.finish_reason.value
                return
            reason = await self._spawn(thread, thread.output_ids[segment_start:], run)
            segment_start = len(thread.output_ids)
            if reason is not None:
                thread.finish_reason = reason
                return

    async def _spawn(self, parent: Thread, segment: list[int], run: EpisodeRun) -> str | None:
        """Run the children of the spawn `segment` ends with; a runtime reason if it cannot.

        `segment` holds only what the parent generated since its last join, so a `<spawn>`
        quoted inside a joined result is never mistaken for the parent's own.
        """
        claimed = self._claim_fork(parent, segment, run, parse_spawn)
        if isinstance(claimed, str):
            return claimed
        children_text, spawn_index = claimed
        encode = lambda text: self.tokenizer.encode(text, add_special_tokens=False)  # noqa: E731 (no BOS mid-sequence)
        children = [run.new_thread(parent.prompt_ids + encode(child + "\n"), parent, spawn_index) for child in children_text]
        await asyncio.gather(*(self._run_thread(c, run) for c in children))
        results = []
        for child in children:
            output = self.tokenizer.decode(child.output_ids, skip_special_tokens=True)
            results.append(child_result(output) if child.finish_reason not in RUNTIME_REASONS else None)
        parent.add_inserted(encode(render_join(results)))
        return None
