"""The Engine protocol: one async interface for every generation backend.

    completion = await engine.generate(prompt_ids, SamplingParams(max_tokens=64), request_id="ep3/t1")

Many `generate` calls may be in flight at once; an engine batches them (continuous
batching) and reuses shared prefixes itself (automatic prefix caching), so callers never
touch KV memory. `update_weights` swaps the policy between decode steps: requests in
flight continue, and every token carries the version of the weights that sampled it.
A request that cannot be served (a prompt longer than the context window, a token id
outside the vocabulary) ends with FinishReason.ERROR and a message; the engine keeps
serving the others.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


class FinishReason(str, enum.Enum):
    STOP_TOKEN = "stop_token"
    """A token of `stop_token_ids` (or the model's EOS) was sampled; it is included."""
    STOP_SEQUENCE = "stop_sequence"
    """The decoded text ended with one of `stop`; the tokens that made it are included."""
    LENGTH = "length"
    """`max_tokens` were generated, or the context window is full."""
    ABORT = "abort"
    """`abort(request_id)` was called; the tokens so far are returned."""
    ERROR = "error"
    """The request could not be served; `Completion.error` says why."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    """Most tokens to generate."""
    temperature: float = 1.0
    """0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 keeps all."""
    seed: int | None = None
    """Per-request seed: the same seed, prompt and weights give the same tokens."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end the request (in addition to EOS unless ignore_eos)."""
    stop: tuple[str, ...] = ()
    """Strings that end the request once the decoded output ends with one of them."""
    ignore_eos: bool = False
    """Keep generating past EOS (benchmarks)."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


@dataclass
class Completion:
    request_id: str
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    """Generated token ids (the stop token included when one ended the request)."""
    logprobs: list[float] = field(default_factory=list)
    """Log-probability of each generated token under the sampling distribution's logits
    (temperature 1, before top-p/top-k), i.e. the policy's logprob."""
    versions: list[int] = field(default_factory=list)
    """Weight version that produced each generated token."""
    finish_reason: FinishReason = FinishReason.LENGTH
    error: str | None = None
    """Why the request failed, when finish_reason is ERROR."""
    num_cached_prompt_tokens: int = 0
    """Prompt tokens whose KV came from the prefix cache (no prefill computed)."""


@dataclass
class EngineStats:
    """Counters since the engine started, and its state now."""

    tokens_generated: int = 0
    """Tokens sampled (every finished or aborted request's output)."""
    prefill_tokens_computed: int = 0
    """Prompt tokens whose KV the engine computed (plus the outputs a preempted sequence
    recomputed); tokens found in the prefix cache are not counted."""
    prefix_cache_hit_tokens: int = 0
    """Tokens whose KV came from the prefix cache (0 for backends without one)."""
    num_running: int = 0
    num_waiting: int = 0
    """Requests queued, not yet admitted (or preempted and waiting to be recomputed)."""
    kv_blocks_in_use: int = 0
    """KV blocks referenced by running sequences (cached free blocks are not in use)."""
    kv_blocks_total: int = 0
    weight_version: int = 0


@runtime_checkable
class Engine(Protocol):
    """What controllers and rollout workers use; implemented by every backend."""

    @property
    def version(self) -> int:
        """The weight version new tokens are sampled with."""
        ...

    async def generate(
        self, prompt_ids: Sequence[int], sampling: SamplingParams, request_id: str | None = None
    ) -> Completion:
        """Generate a continuation of `prompt_ids`; never raises for a bad request (ERROR)."""
        ...

    async def update_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        """Swap in new weights (Hugging Face parameter names) between decode steps.

        Returns once they are in use; requests in flight continue with them."""
        ...

    def abort(self, request_id: str) -> bool:
        """End a request early (FinishReason.ABORT); False if it is not in flight."""
        ...

    def stats(self) -> EngineStats:
        ...
