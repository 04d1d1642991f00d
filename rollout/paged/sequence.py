"""A request's state inside the paged engine: its tokens, KV progress and blocks. Plain Python.

`num_computed_tokens` counts the leading tokens whose KV is in the sequence's blocks
(computed here or found in the prefix cache). Generation alternates: a step computes KV
up to the last token and samples the next one, which is appended with no KV yet, so a
running sequence normally has exactly one uncomputed token. Preemption throws all KV
away (`num_computed_tokens = 0`) and the sequence is recomputed from prompt + output
when it is admitted again; its sampled tokens are kept.
"""
from __future__ import annotations

import enum

from rollout.engine import Completion, FinishReason, SamplingParams
from rollout.paged.block_manager import hash_block


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    def __init__(self, request_id: str, prompt_ids: list[int], sampling: SamplingParams, block_size: int):
        assert prompt_ids
        self.request_id = request_id
        self.sampling = sampling
        self.block_size = block_size
        self.token_ids = list(prompt_ids)
        self.prompt_len = len(prompt_ids)
        self.logprobs: list[float] = []
        self.versions: list[int] = []
        self.status = Status.WAITING
        self.finish_reason: FinishReason | None = None
        self.num_computed_tokens = 0
        self.block_table: list[int] = []
        self.num_registered_blocks = 0
        """Leading blocks already in the prefix cache (hits, or registered after compute)."""
        self.cache_epoch = -1
        """The block manager's epoch at admission; blocks are registered only within it."""
        self.num_cached_prompt_tokens = 0
        """Prompt tokens whose KV came from the prefix cache at the first admission."""
        self.num_admissions = 0
        self.prefill_end = 0
        """Tokens known at the last admission; computing their KV counts as prefill."""
        self._block_hashes: list[bytes] = []

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.prompt_len :]

    def full_block_hashes(self) -> list[bytes]:
        """Prefix hashes of every full block of `token_ids` (extended as tokens arrive)."""
        size = self.block_size
        for index in range(len(self._block_hashes), self.num_tokens // size):
            parent = self._block_hashes[-1] if self._block_hashes else None
            self._block_hashes.append(hash_block(parent, self.token_ids[index * size : (index + 1) * size]))
        return self._block_hashes

    def append(self, token_id: int, logprob: float, version: int) -> None:
        self.token_ids.append(token_id)
        self.logprobs.append(logprob)
        self.versions.append(version)

    def completion(self) -> Completion:
        assert self.finish_reason is not None
        return Completion(
            request_id=self.request_id,
            prompt_ids=self.token_ids[: self.prompt_len],
            token_ids=self.output_ids,
            logprobs=list(self.logprobs),
            versions=list(self.versions),
            finish_reason=self.finish_reason,
            num_cached_prompt_tokens=self.num_cached_prompt_tokens,
        )
