"""The parallel-block controller: branches continue the parent's prefix and are joined in full.

A thread generates until it writes `</parallel>` (a stop token) or ends. At a block the
runtime parses the outline (reasoning/protocols/parallel.py), starts one branch per goal
with the parent's whole context plus `<thread>GOAL\\n` as its prompt, awaits them all
concurrently (the engine batches them, and its prefix cache serves the long prefix they
share with each other and with the parent), appends the join - every goal and full body,
then `<conclusion>` - to the parent as observed tokens, and lets the parent continue.
The join is built from the branches' own token ids, not re-encoded text, so a branch's
prompt plus output is token for token what the parent's joined sequence shows.

Branches also stop at `</thread>`, which ends a body; but the `</thread>` that closes a
goal header of a branch's own nested outline stops it too, so while an outline is open
the branch is simply continued (one engine request per goal header, at most
`max_children` + 1 before the outline is refused). The root does not stop at `</thread>`.

Whatever the model writes, the episode stays bounded (reasoning/controllers/limits.py):
a malformed outline, a block too deep or too wide, too many threads, the token budget or
the wall clock ends the offending thread with a finish reason; a branch that ends that
way is joined as `Fail`, and a root that ends that way scores 0 with that reason.
Otherwise the root's decoded output, joins included, is verified, so its last `<answer>`
decides: normally the conclusion's, else one a branch wrote.
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.runtime import RUNTIME_REASONS, EpisodeRun, ThreadController, generate_step
from reasoning.episode import Thread
from reasoning.markup import CONCLUSION_OPEN, PARALLEL_CLOSE, PARALLEL_OPEN, PARALLEL_TAGS, THREAD_CLOSE, tag_token_ids
from reasoning.protocols.parallel import FAILED_BODY, branch_prompt_suffix, parse_block
from reasoning.tasks.base import Task
from rollout.engine import Engine, FinishReason, SamplingParams


class ParallelController(ThreadController):
    """Runs parallel-block episodes on an engine; one instance serves many concurrent episodes."""

    mode = "parallel"

    def __init__(self, engine: Engine, tokenizer: Any, task: Task, sampling: SamplingParams, limits: ThreadLimits):
        super().__init__(engine, tokenizer, task, limits)
        # Stops and the outline scan match tag ids: refuse a vocabulary without the tags as tokens.
        ids = tag_token_ids(tokenizer, PARALLEL_TAGS)
        self.parallel_open_id = ids[PARALLEL_OPEN]
        self.parallel_close_id = ids[PARALLEL_CLOSE]
        self.thread_close_id = ids[THREAD_CLOSE]
        self.conclusion_open_id = ids[CONCLUSION_OPEN]
        self.end_ids = {tokenizer.eos_token_id, self.thread_close_id}
        root_stops = tuple(dict.fromkeys((*sampling.stop_token_ids, self.parallel_close_id)))
        self.root_sampling = replace(sampling, stop_token_ids=root_stops)
        self.branch_sampling = replace(sampling, stop_token_ids=(*root_stops, self.thread_close_id))

    async def _run_thread(self, thread: Thread, run: EpisodeRun) -> None:
        limits = self.limits
        sampling = self.root_sampling if thread.parent_id < 0 else self.branch_sampling
        segment_start = 0  # where the tokens generated since the last join begin
        num_requests = 0
        while True:
            room = min(sampling.max_tokens, limits.max_thread_tokens) - thread.num_generated
            if room <= 0:
                thread.finish_reason = FinishReason.LENGTH.value
                return
            request_id = f"{run.episode_id}/{thread.thread_id}/{num_requests}"
            num_requests += 1
            completion = await generate_step(self.engine, thread, replace(sampling, max_tokens=room), request_id, run)
            if isinstance(completion, str):  # the runtime's reason: timeout or budget_exhausted
                thread.finish_reason = completion
                return
            thread.add_generated(completion.token_ids, completion.logprobs, completion.versions)
            last = completion.token_ids[-1] if completion.token_ids else None
            if completion.finish_reason is not FinishReason.STOP_TOKEN:
                last = None  # a tag that was cut by max_tokens did not stop the thread
            segment = thread.output_ids[segment_start:]
            if last == self.parallel_close_id:
                reason = await self._run_block(thread, segment, run)
                segment_start = len(thread.output_ids)
            elif last == self.thread_close_id and self.parallel_open_id in segment:
                reason = self._check_open_outline(segment)  # a goal header closed; keep writing
            else:
                thread.finish_reason = completion.finish_reason.value
                return
            if reason is not None:
                thread.finish_reason = reason
                return

    def _check_open_outline(self, segment: list[int]) -> str | None:
        """`bad_markup` once the open outline at the end of `segment` has too many goal headers."""
        outline_start = len(segment) - segment[::-1].index(self.parallel_open_id)
        num_headers = segment[outline_start:].count(self.thread_close_id)
        return "bad_markup" if num_headers > self.limits.max_children else None

    async def _run_block(self, parent: Thread, segment: list[int], run: EpisodeRun) -> str | None:
        """Run the branches of the block `segment` ends with and join them; a runtime reason if it cannot."""
        claimed = self._claim_fork(parent, segment, run, parse_block)
        if isinstance(claimed, str):
            return claimed
        goals, spawn_index = claimed
        context = parent.prompt_ids + parent.output_ids
        headers = [self.tokenizer.encode(branch_prompt_suffix(goal), add_special_tokens=False) for goal in goals]
        branches = [run.new_thread(context + header, parent, spawn_index) for header in headers]
        await asyncio.gather(*(self._run_thread(branch, run) for branch in branches))
        join: list[int] = []
        for header, branch in zip(headers, branches):
            join += header + self._body_ids(branch) + [self.thread_close_id]
        parent.add_inserted(join + [self.conclusion_open_id])
        return None

    def _body_ids(self, branch: Thread) -> list[int]:
        """A finished branch's output without the `</thread>` or EOS that ended it; `Fail` if the runtime ended it."""
        if branch.finish_reason in RUNTIME_REASONS:
            return self.tokenizer.encode(FAILED_BODY, add_special_tokens=False)
        stopped = branch.finish_reason == FinishReason.STOP_TOKEN.value
        if stopped and branch.output_ids and branch.output_ids[-1] in self.end_ids:
            return branch.output_ids[:-1]
        return branch.output_ids
