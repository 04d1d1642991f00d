"""WaitingBuffer without Ray: waiters wake when the buffer changes, time out with None,
and a wait that succeeds takes exactly one ticket."""
from __future__ import annotations

import asyncio

from actors.stream_buffer import EpisodeMeta, StreamBuffer
from actors.waiting_buffer import WaitingBuffer


def episodes(ticket, min_version=0):
    return [(f"h{ticket.ticket_id}.{i}", EpisodeMeta(f"p{ticket.ticket_id}", i, 10, min_version, min_version, 1.0))
            for i in range(ticket.group_size)]  # fmt: skip


def synchronous_buffer() -> WaitingBuffer:
    # eta=0, B=2, k=2: one group per version.
    return WaitingBuffer(StreamBuffer(max_staleness=0, batch_size=2, group_size=2))


async def one_holds_the_ticket_another_waits(buf: WaitingBuffer, holder: str, waiter: str):
    """`holder` takes the one group version 0 allows; `waiter` then waits for a ticket."""
    held = await buf.admit(holder, timeout_s=1)
    waiting = asyncio.create_task(buf.admit(waiter, timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the capacity rule says no at version 0
    return held, waiting


def test_a_refused_admission_waits_for_the_new_version():
    async def scenario():
        buf = synchronous_buffer()
        first, waiting = await one_holds_the_ticket_another_waits(buf, "w", "w")
        await buf.put(first, episodes(first))
        assert len(await buf.take_batch(0, timeout_s=1)) == 2
        await asyncio.sleep(0.05)
        assert not waiting.done()  # consuming does not widen the capacity
        await buf.set_version(1)
        second = await asyncio.wait_for(waiting, 1)
        return first, second, buf.buffer.metrics()

    first, second, metrics = asyncio.run(scenario())
    assert (first.ticket_id, second.ticket_id) == (0, 1)
    assert metrics["admitted"] == 4 and metrics["in_flight"] == 2


def test_waits_time_out_with_none_and_take_nothing():
    async def scenario():
        buf = synchronous_buffer()
        await buf.admit("w", timeout_s=1)
        return await buf.admit("w", timeout_s=0.05), await buf.take_batch(0, timeout_s=0.05), buf.buffer.metrics()

    ticket, batch, metrics = asyncio.run(scenario())
    assert ticket is None and batch is None
    assert metrics["admitted"] == 2 and metrics["consumed"] == 0


def test_a_batch_wait_wakes_on_the_put_that_completes_it():
    async def scenario():
        buf = synchronous_buffer()
        ticket = await buf.admit("w", timeout_s=1)
        batch = asyncio.create_task(buf.take_batch(0, timeout_s=5))
        await buf.put(ticket, episodes(ticket)[:1])
        await asyncio.sleep(0.05)
        assert not batch.done()  # half a group is not a batch
        await buf.put(ticket, episodes(ticket)[1:])
        return await asyncio.wait_for(batch, 1)

    assert [e.handle for e in asyncio.run(scenario())] == ["h0.0", "h0.1"]


def test_an_abort_gives_the_slots_to_a_waiting_worker():
    async def scenario():
        buf = synchronous_buffer()
        dead, waiting = await one_holds_the_ticket_another_waits(buf, "dead", "alive")
        assert await buf.abort_worker("dead", "worker_died") == 2  # episodes
        return dead, await asyncio.wait_for(waiting, 1)

    dead, alive = asyncio.run(scenario())
    assert alive.ticket_id == dead.ticket_id + 1


def test_many_waiters_get_one_ticket_each_within_capacity():
    async def scenario():
        # eta=2, B=4, k=2: 6 groups at version 0, 2 more at version 1.
        buf = WaitingBuffer(StreamBuffer(max_staleness=2, batch_size=4, group_size=2))
        waiters = [asyncio.create_task(buf.admit(f"w{i}", timeout_s=0.3)) for i in range(10)]
        await asyncio.sleep(0.05)
        await buf.set_version(1)
        return [await w for w in waiters], buf.buffer.metrics()

    tickets, metrics = asyncio.run(scenario())
    granted = [t.ticket_id for t in tickets if t is not None]
    assert sorted(granted) == list(range(8)) and metrics["admitted"] == 16
