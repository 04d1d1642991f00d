"""Waiting on the stream buffer instead of polling it (asyncio; plain Python, no Ray).

A worker that asks for a ticket while the capacity rule says no, and the driver asking
for a batch that is not complete yet, wait here until the buffer changes, or until a
timeout, so that they can look at a stop flag or a dead worker and ask again. Every call
that can widen the capacity or complete a batch (a put, an abort, a new version, a
restored state) wakes the waiters, which try again. Polling did the same on a timer and,
on a two-core machine, took CPU from the rollout worker and the learner.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Hashable, TypeVar

from actors.stream_buffer import EpisodeMeta, StreamBuffer, Ticket

T = TypeVar("T")


class WaitingBuffer:
    def __init__(self, buffer: StreamBuffer):
        self.buffer = buffer
        self._changed = asyncio.Condition()

    async def admit(self, worker_id: Hashable, timeout_s: float) -> Ticket | None:
        """A ticket for one group once the capacity rule allows it; None after `timeout_s`."""
        return await self._wait_for(lambda: self.buffer.try_admit(worker_id), timeout_s)

    async def take_batch(self, learner_version: int, timeout_s: float) -> list | None:
        """A batch for the learner at `learner_version` once one is complete; None after `timeout_s`."""
        return await self._wait_for(lambda: self.buffer.take_batch(learner_version), timeout_s)

    async def put(self, ticket: Ticket, handles_and_metas: list[tuple[Any, EpisodeMeta]]) -> None:
        for handle, meta in handles_and_metas:
            self.buffer.put(ticket, handle, meta)
        await self._notify()

    async def abort(self, ticket: Ticket, reason: str) -> None:
        self.buffer.abort(ticket, reason)
        await self._notify()

    async def abort_worker(self, worker_id: Hashable, reason: str) -> int:
        aborted = self.buffer.abort_worker(worker_id, reason)
        await self._notify()
        return aborted

    async def set_version(self, version: int) -> None:
        self.buffer.set_version(version)
        await self._notify()

    async def load_state(self, state: dict, handles: dict) -> None:
        self.buffer.load_state_dict(state, handles)
        await self._notify()

    async def _wait_for(self, attempt: Callable[[], T | None], timeout_s: float) -> T | None:
        """`attempt()` now and after each change until it gives something; None on timeout.
        An attempt that succeeds is returned even if the timeout fires at that moment."""
        async with self._changed:
            try:
                return await asyncio.wait_for(self._changed.wait_for(attempt), timeout_s)
            except asyncio.TimeoutError:
                return None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
