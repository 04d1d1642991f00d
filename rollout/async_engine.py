"""The async front of every backend: an asyncio loop that drives a synchronous engine core.

    engine = AsyncEngine(core)
    completion = await engine.generate(prompt_ids, SamplingParams(max_tokens=64))

Threading: `generate`, `abort`, `update_weights` and `stats` are called on the event
loop; they only queue work. A background task on that loop (started by the first call)
runs the core's `step()` in ONE dedicated worker thread, so the loop stays free for
controllers while torch computes, and the core is only ever touched by one thread at a
time: queued operations (add, abort, weight update) are applied in arrival order between
steps, never during one. Weight loading also runs in the worker thread. The worker keeps
stepping without a round trip through the loop until a request finishes or new work is
queued (a thread-safe flag), so a long decode costs one thread hop, not one per token.

OpenMP: the thread that built the engine, the loop's thread, and the worker whenever it
runs out of work release their OpenMP threads (rollout/openmp.py), so that while the
engine computes, its worker's are the only ones in the process and keep spinning
between torch ops instead of sleeping (a decode step 1.7x faster on 2 cores).

A request the core rejects (`InvalidRequest`) completes at once with FinishReason.ERROR;
the engine keeps serving the others. If a step raises, that is a bug rather than a bad
request: every caller in flight gets an `EngineDeadError` (chained to the cause) and the
engine refuses further work, instead of leaving callers waiting forever.

An engine may be used from successive event loops (e.g. one `asyncio.run` per test) as
long as each loop has finished with it; requests left over from a closed loop are
aborted in the core when the next loop starts using the engine.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Mapping, Protocol, Sequence

import numpy as np

from rollout.engine import Completion, EngineStats, FinishReason, SamplingParams
from rollout.errors import EngineDeadError, InvalidRequest, WeightUpdateError
from rollout.openmp import release_openmp_threads
from rollout.requests import Request, make_request


class EngineCore(Protocol):
    """A synchronous engine; `AsyncEngine` guarantees calls never overlap."""

    version: int

    def validate(self, request: Request) -> None:
        """Raise InvalidRequest if the request cannot be served (must be thread-safe)."""

    def add_request(self, request: Request) -> None:
        """Queue a validated request."""

    def abort_request(self, request_id: str) -> Completion | None:
        """End a queued or running request: its completion (ABORT), or None if unknown."""

    def has_unfinished(self) -> bool:
        ...

    def step(self) -> list[Completion]:
        """Advance generation; return the requests that finished in this step."""

    def load_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        """Copy in new weights (raises WeightUpdateError, changing nothing, on a bad name or shape)."""

    def stats(self) -> EngineStats:
        """Counters only (safe to read while a step runs in another thread)."""


@dataclass
class _Add:
    request: Request


@dataclass
class _Abort:
    request_id: str


@dataclass
class _LoadWeights:
    named_arrays: Mapping[str, np.ndarray]
    version: int
    done: asyncio.Future


class AsyncEngine:
    """The Engine protocol (rollout/engine.py) over any EngineCore."""

    def __init__(self, core: EngineCore):
        self.core = core
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="treadle-engine")
        self._inbox: list[_Add | _Abort | _LoadWeights] = []
        self._work_queued = threading.Event()  # set with every op: the worker yields to the loop
        self._waiters: dict[str, asyncio.Future] = {}
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._stale_ids: list[str] = []
        self._dead: EngineDeadError | None = None
        release_openmp_threads()  # those of the thread that built the core

    @property
    def version(self) -> int:
        return self.core.version

    async def generate(
        self, prompt_ids: Sequence[int], sampling: SamplingParams, request_id: str | None = None
    ) -> Completion:
        self._bind_loop()
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        if rid in self._waiters:
            return _failed(rid, list(prompt_ids), f"request {rid!r} is already in flight")
        try:
            request = make_request(rid, prompt_ids, sampling)
            self.core.validate(request)
        except InvalidRequest as e:
            return _failed(rid, list(prompt_ids), str(e))
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[rid] = waiter
        self._submit(_Add(request))
        try:
            return await waiter
        except asyncio.CancelledError:
            self.abort(rid)  # the caller gave up: stop spending compute on it
            raise

    def abort(self, request_id: str) -> bool:
        """Ask for `request_id` to end with ABORT at the next step boundary (call on the
        engine's event loop); its `generate` then returns the tokens so far."""
        if request_id not in self._waiters:
            return False
        self._submit(_Abort(request_id))
        return True

    async def update_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        self._bind_loop()
        done = asyncio.get_running_loop().create_future()
        self._submit(_LoadWeights(named_arrays, version, done))
        await done

    def stats(self) -> EngineStats:
        stats = self.core.stats()
        queued = sum(isinstance(op, _Add) for op in self._inbox)
        return replace(stats, num_waiting=stats.num_waiting + queued)

    def close(self) -> None:
        """Stop the loop task and the worker thread; requests in flight are cancelled and
        later calls raise EngineDeadError."""
        self._dead = self._dead or EngineDeadError("the engine was closed")
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for waiter in self._waiters.values():
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.cancel()
        self._waiters.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- the loop --------------------------------------------------------------------

    def _submit(self, op: _Add | _Abort | _LoadWeights) -> None:
        if self._dead is not None:
            raise self._dead
        self._inbox.append(op)
        self._work_queued.set()
        assert self._wakeup is not None
        self._wakeup.set()

    def _bind_loop(self) -> None:
        if self._dead is not None:
            raise self._dead
        loop = asyncio.get_running_loop()
        if loop is self._loop and self._task is not None and not self._task.done():
            return
        if self._loop is not None and self._loop is not loop and self._loop.is_running():
            raise RuntimeError("this engine is in use by another running event loop")
        # Whatever the previous loop left behind can no longer be answered: abort it.
        self._stale_ids += list(self._waiters)
        self._waiters.clear()
        self._inbox.clear()
        self._loop = loop
        release_openmp_threads()
        self._wakeup = asyncio.Event()
        self._task = loop.create_task(self._run(), name="treadle-engine-loop")

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception as error:  # a bug in a core: deliver it to every caller, then stop
            self._dead = EngineDeadError(f"engine step failed: {error!r}")
            self._dead.__cause__ = error
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(self._dead)
            for op in self._inbox:
                if isinstance(op, _LoadWeights) and not op.done.done():
                    op.done.set_exception(self._dead)
            self._waiters.clear()
            self._inbox.clear()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        if self._stale_ids:
            stale, self._stale_ids = self._stale_ids, []
            await loop.run_in_executor(self._executor, _abort_all, self.core, stale)
        while True:
            await self._apply_inbox(loop)
            if not self.core.has_unfinished():
                self._wakeup.clear()
                await loop.run_in_executor(self._executor, release_openmp_threads)
                await self._wakeup.wait()
                continue
            finished = await loop.run_in_executor(self._executor, self._step_until_news)
            for completion in finished:
                self._resolve(completion)

    def _step_until_news(self) -> list[Completion]:
        """Worker thread: step until something finished, work was queued, or none is left."""
        finished = self.core.step()
        while not finished and not self._work_queued.is_set() and self.core.has_unfinished():
            finished = self.core.step()
        return finished

    async def _apply_inbox(self, loop: asyncio.AbstractEventLoop) -> None:
        self._work_queued.clear()  # before reading the inbox, so no op can go unnoticed
        while self._inbox:
            op = self._inbox.pop(0)
            if isinstance(op, _Add):
                self.core.add_request(op.request)
            elif isinstance(op, _Abort):
                completion = self.core.abort_request(op.request_id)
                if completion is not None:
                    self._resolve(completion)
            else:
                try:
                    await loop.run_in_executor(self._executor, self.core.load_weights, op.named_arrays, op.version)
                except WeightUpdateError as e:  # the caller's mistake; the engine is unchanged
                    if not op.done.done():
                        op.done.set_exception(e)
                else:
                    if not op.done.done():
                        op.done.set_result(None)

    def _resolve(self, completion: Completion) -> None:
        waiter = self._waiters.pop(completion.request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(completion)


def _abort_all(core: EngineCore, request_ids: list[str]) -> None:
    for rid in request_ids:
        core.abort_request(rid)


def _failed(request_id: str, prompt_ids: list, message: str) -> Completion:
    return Completion(request_id, prompt_ids, finish_reason=FinishReason.ERROR, error=message)
