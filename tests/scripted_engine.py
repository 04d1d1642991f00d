"""A scripted Engine for controller tests: a function of the context text decides the output.

It implements the Engine protocol (rollout/engine.py) without a model: `respond(context)`
returns the text to generate after the decoded prompt; the engine tokenizes it and
applies the request's stop tokens and max_tokens as a real engine would. `delay_s` makes
each call take time, for wall-clock limits; `calls` records every prompt.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rollout.engine import Completion, EngineStats, FinishReason, SamplingParams


class ScriptedEngine:
    def __init__(self, tokenizer: Any, respond: Callable[[str], str], delay_s: float = 0.0):
        self.tokenizer = tokenizer
        self.respond = respond
        self.delay_s = delay_s
        self.calls: list[str] = []
        self.aborted: list[str] = []
        self._version = 0
        self._generated = 0

    @property
    def version(self) -> int:
        return self._version

    async def generate(self, prompt_ids: Sequence[int], sampling: SamplingParams, request_id: str | None = None) -> Completion:
        context = self.tokenizer.decode(list(prompt_ids), skip_special_tokens=True)
        self.calls.append(context)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        ids = self.tokenizer.encode(self.respond(context)) + [self.tokenizer.eos_token_id]
        stops = set(sampling.stop_token_ids) | {self.tokenizer.eos_token_id}
        reason = FinishReason.LENGTH
        for i, token in enumerate(ids):
            if token in stops:
                ids, reason = ids[: i + 1], FinishReason.STOP_TOKEN
                break
        if len(ids) > sampling.max_tokens:
            ids, reason = ids[: sampling.max_tokens], FinishReason.LENGTH
        self._generated += len(ids)
        await asyncio.sleep(0)
        return Completion(
            request_id or "", list(prompt_ids), ids, [0.0] * len(ids), [self._version] * len(ids), reason
        )

    async def update_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        self._version = version

    def abort(self, request_id: str) -> bool:
        self.aborted.append(request_id)
        return True

    def stats(self) -> EngineStats:
        return EngineStats(tokens_generated=self._generated, weight_version=self._version)
