"""The `hf` backend: transformers `generate` behind the Engine protocol.

It is the reference the `paged` backend is tested against and the baseline it is
benchmarked against, so it uses transformers' own sampling (temperature, top-k, top-p
warpers, multinomial) and KV cache, and adds only what the protocol needs:

- Batching: each step takes the oldest pending request and every other pending request
  with the same sampling settings (up to `max_batch_size`), left-pads them and runs one
  `generate`. Requests with different temperature/top-p/top-k run in separate batches.
- Seeds: a sampled request with a `seed` runs alone, with torch's RNG seeded from it
  (forked, so the global RNG is untouched), which makes it reproducible; unseeded
  sampling draws from torch's global RNG. Greedy requests ignore the seed and batch freely.
- Stopping: one `StopChecker` per row (the same rules as every backend) is consulted
  after each token through a per-row stopping criterion; a row that stopped keeps
  generating filler until the batch ends and is cut at its own stop.
- Logprobs: log-softmax of the raw logits (`output_logits`), temperature 1, before
  top-k/top-p, gathered at the sampled tokens.
- Versions: weights change only between batches, so every token of a request carries
  the version current when its batch started.
- Abort: a request not yet in a batch ends at once; one inside a running batch finishes
  normally (this backend cannot stop a single row of `generate`).
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import torch
from transformers import GenerationConfig, PreTrainedModel, StoppingCriteria, StoppingCriteriaList

from rollout.checkpoint import apply_weight_update, eos_token_ids, plan_weight_update
from rollout.engine import Completion, EngineStats, FinishReason
from rollout.requests import Request, validate_request
from rollout.stopping import Decode, StopChecker


class HFCore:
    """An EngineCore (see rollout/async_engine.py) running `model.generate`."""

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        decode: Decode | None = None,
        max_batch_size: int = 64,
        max_model_len: int | None = None,
    ):
        assert max_batch_size >= 1
        self.model = model.eval()
        self.version = 0
        self.vocab_size = model.get_input_embeddings().num_embeddings
        limit = model.config.max_position_embeddings
        self.max_model_len = min(limit, max_model_len) if max_model_len else limit
        self._decode = decode
        self._max_batch_size = max_batch_size
        self._eos_token_ids = eos_token_ids(model.config, model)
        pad = model.config.pad_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._weights = dict(model.state_dict(keep_vars=True))
        self._pending: dict[str, Request] = {}
        self._num_running = 0
        self._tokens_generated = 0
        self._prompt_tokens = 0

    def validate(self, request: Request) -> None:
        validate_request(
            request, vocab_size=self.vocab_size, max_model_len=self.max_model_len,
            can_decode_text=self._decode is not None,
        )

    def add_request(self, request: Request) -> None:
        self.validate(request)
        self._pending[request.request_id] = request

    def abort_request(self, request_id: str) -> Completion | None:
        request = self._pending.pop(request_id, None)
        if request is None:
            return None
        return Completion(request_id, request.prompt_ids, finish_reason=FinishReason.ABORT)

    def has_unfinished(self) -> bool:
        return bool(self._pending)

    def step(self) -> list[Completion]:
        batch = self._next_batch()
        for request in batch:
            del self._pending[request.request_id]
        self._num_running = len(batch)
        try:
            return self._generate(batch)
        finally:
            self._num_running = 0

    def load_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        apply_weight_update(plan_weight_update(named_arrays, self._weights))
        self.version = version

    def stats(self) -> EngineStats:
        return EngineStats(
            tokens_generated=self._tokens_generated,
            prefill_tokens_computed=self._prompt_tokens,
            num_running=self._num_running,
            num_waiting=len(self._pending),
            weight_version=self.version,
        )

    def _next_batch(self) -> list[Request]:
        first = next(iter(self._pending.values()))
        key = _batch_key(first)
        same = (r for r in self._pending.values() if _batch_key(r) == key)
        return [r for r, _ in zip(same, range(self._max_batch_size))]

    def _generate(self, batch: list[Request]) -> list[Completion]:
        sampling = batch[0].sampling
        checkers = [
            StopChecker(r.sampling, prompt_len=len(r.prompt_ids), eos_token_ids=self._eos_token_ids,
                        max_model_len=self.max_model_len, decode=self._decode)
            for r in batch
        ]
        width = max(len(r.prompt_ids) for r in batch)
        device = self.model.device
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):  # left padding: every prompt ends at `width`
            input_ids[row, width - len(request.prompt_ids):] = torch.tensor(request.prompt_ids)
            attention_mask[row, width - len(request.prompt_ids):] = 1
        stops = _RowStops(checkers, width)
        config = GenerationConfig(
            max_new_tokens=max(c.max_new_tokens for c in checkers),
            pad_token_id=self._pad_id,
            eos_token_id=None,  # stopping is per row, by `stops`
            output_logits=True,
            return_dict_in_generate=True,
            **_sampling_kwargs(sampling),
        )
        version = self.version
        with torch.inference_mode(), _seeded(sampling.seed if len(batch) == 1 else None, device):
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                generation_config=config, stopping_criteria=StoppingCriteriaList([stops]),
            )
        generated = out.sequences[:, width:].cpu()
        logprobs = torch.stack([step.float().log_softmax(-1).cpu() for step in out.logits], dim=1)
        logprobs = logprobs.gather(-1, generated[..., None]).squeeze(-1)
        completions = []
        for row, request in enumerate(batch):
            assert stops.ends[row] is not None, "every row ends by its own checker"
            end, reason = stops.ends[row]
            completions.append(Completion(
                request.request_id, request.prompt_ids, token_ids=generated[row, :end].tolist(),
                logprobs=logprobs[row, :end].tolist(), versions=[version] * end, finish_reason=reason,
            ))
            self._tokens_generated += end
            self._prompt_tokens += len(request.prompt_ids)
        return completions


class _RowStops(StoppingCriteria):
    """Per-row stopping by StopChecker; records where and why each row ended."""

    def __init__(self, checkers: list[StopChecker], prompt_width: int):
        self.checkers = checkers
        self.prompt_width = prompt_width
        self.generated: list[list[int]] = [[] for _ in checkers]
        self.ends: list[tuple[int, FinishReason] | None] = [None] * len(checkers)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        num_generated = input_ids.shape[1] - self.prompt_width
        newest = input_ids[:, -1].tolist()
        for row, checker in enumerate(self.checkers):
            if self.ends[row] is None:
                self.generated[row].append(newest[row])
                assert len(self.generated[row]) == num_generated, "called once per generated token"
                reason = checker.check(self.generated[row], len(self.generated[row]))
                if reason is not None:
                    self.ends[row] = (len(self.generated[row]), reason)
        return torch.tensor([end is not None for end in self.ends], device=input_ids.device)


def _batch_key(request: Request) -> tuple:
    s = request.sampling
    if s.temperature == 0:
        return ("greedy",)
    if s.seed is not None:
        return ("seeded", request.request_id)
    return ("sample", s.temperature, s.top_p, s.top_k)


def _sampling_kwargs(sampling) -> dict:
    if sampling.temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}


def _seeded(seed: int | None, device: torch.device):
    if seed is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[device] if device.type == "cuda" else []))
    torch.manual_seed(seed)
    return stack
