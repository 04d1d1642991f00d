"""StreamBuffer without Ray: capacity rule, staleness boundary, whole groups, conservation,
abort accounting and checkpoint round trip. Handles are plain strings here."""
from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.stream_buffer import EpisodeMeta, StreamBuffer, StreamBufferError


def meta(ticket, index, min_version=0, max_version=None, tokens=10, reward=1.0):
    max_version = min_version if max_version is None else max_version
    return EpisodeMeta(f"p{ticket.ticket_id}", index, tokens, min_version, max_version, reward)


def fill(buf, ticket, min_version=0, tokens=10):
    for i in range(ticket.group_size):
        buf.put(ticket, f"h{ticket.ticket_id}.{i}", meta(ticket, i, min_version, tokens=tokens))


def admit_all(buf):
    tickets = []
    while (t := buf.try_admit("w")) is not None:
        tickets.append(t)
    return tickets


def conserved(m):
    return m["admitted"] == m["consumed"] + m["dropped"] + m["in_flight"] + m["buffered"]


# ---- capacity rule ---------------------------------------------------------------------
def test_capacity_eta0_is_synchronous():
    # B=4, k=2, eta=0: capacity (v+0+1)*4 -> 4 episodes = 2 groups at v=0.
    buf = StreamBuffer(max_staleness=0, batch_size=4, group_size=2)
    tickets = admit_all(buf)
    assert len(tickets) == 2 and buf.metrics()["in_flight"] == 4
    for t in tickets:
        fill(buf, t, min_version=0)
    assert buf.try_admit("w") is None  # buffered still counts as live
    assert len(buf.take_batch(0)) == 4
    assert buf.try_admit("w") is None  # consumed too: 4 live of capacity 4
    buf.set_version(1)  # capacity 8 -> 2 more groups, 8 episodes ever started
    assert len(admit_all(buf)) == 2
    assert buf.metrics()["admitted"] == 8


def test_capacity_eta2_counts_per_version():
    # B=4, k=2, eta=2: capacity (v+3)*4 = 12, 16, 20 -> 6, 8, 10 groups admitted in total.
    buf = StreamBuffer(max_staleness=2, batch_size=4, group_size=2)
    assert len(admit_all(buf)) == 6
    buf.set_version(1)
    assert len(admit_all(buf)) == 2
    buf.set_version(2)
    assert len(admit_all(buf)) == 2
    assert buf.metrics()["admitted"] == 20 and buf.capacity() == 20


def test_capacity_group_of_one_is_per_episode():
    # k=1, B=3, eta=1: (0+1+1)*3 = 6 episodes at v=0.
    buf = StreamBuffer(max_staleness=1, batch_size=3, group_size=1)
    assert len(admit_all(buf)) == 6


def test_dropped_slots_return_to_capacity():
    # eta=0 B=2 k=2: one group fits; aborting it frees the slots (no deadlock at eta=0).
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2)
    t = buf.try_admit("w")
    assert buf.try_admit("w") is None
    buf.abort(t, "worker_died")
    assert buf.try_admit("w") is not None


# ---- staleness ---------------------------------------------------------------------------
def test_staleness_boundary_lag_eta_allowed_eta_plus_one_dropped():
    # eta=1, B=k=2. Group A generated at v0 taken at v1: lag 1 <= 1, allowed.
    buf = StreamBuffer(max_staleness=1, batch_size=2, group_size=2)
    a, b = buf.try_admit("w"), buf.try_admit("w")
    fill(buf, a, min_version=0)
    batch = buf.take_batch(1)
    assert [e.handle for e in batch] == ["h0.0", "h0.1"]
    # Group B: one episode from v0, one from v2; at v2 the lag of the oldest is 2 > 1, so
    # the whole group is dropped, the fresh sibling included.
    buf.put(b, "x", meta(b, 0, min_version=0, max_version=2))
    buf.put(b, "y", meta(b, 1, min_version=2))
    assert buf.take_batch(2) is None
    m = buf.metrics()
    assert m["dropped_by_reason"] == {"stale": 2} and m["consumed"] == 2 and m["buffered"] == 0
    assert m["staleness_episodes"] == {1: 2} and m["staleness_tokens"] == {1: 20}
    assert m["max_consumed_staleness"] == 1


def test_stale_on_arrival_is_dropped_at_put():
    # eta=0: version moved to 1 while a v0 group was generating; it completes already stale.
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2)
    t = buf.try_admit("w")
    buf.set_version(1)
    fill(buf, t, min_version=0)
    assert buf.metrics()["dropped_by_reason"] == {"stale": 2}
    assert buf.metrics()["buffer_depth_groups"] == 0


def test_incomplete_group_waits_until_complete_before_stale_check():
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2)
    t = buf.try_admit("w")
    buf.put(t, "a", meta(t, 0, min_version=0))
    buf.set_version(3)
    assert buf.metrics()["buffered"] == 1 and buf.metrics()["dropped"] == 0
    buf.put(t, "b", meta(t, 1, min_version=3))
    assert buf.metrics()["dropped_by_reason"] == {"stale": 2}


# ---- groups -------------------------------------------------------------------------------
def test_groups_whole_fifo_by_admission_skipping_incomplete():
    # B=4 k=2. Admitted A(0), B(1), C(2), D(3). C completes first, then A; B is half done.
    buf = StreamBuffer(max_staleness=3, batch_size=4, group_size=2)
    a, b, c, d = (buf.try_admit(f"w{i}") for i in range(4))
    fill(buf, c)
    assert buf.take_batch(0) is None  # only 2 ready episodes
    buf.put(a, "a1", meta(a, 1))  # out of sample order on purpose
    buf.put(a, "a0", meta(a, 0))
    buf.put(b, "b0", meta(b, 0))
    batch = buf.take_batch(0)
    assert [(e.ticket.ticket_id, e.meta.sample_index) for e in batch] == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert [e.handle for e in batch[:2]] == ["a0", "a1"]
    m = buf.metrics()
    assert (m["consumed"], m["buffered"], m["in_flight"]) == (4, 1, 3)


def test_take_batch_larger_than_default():
    buf = StreamBuffer(max_staleness=1, batch_size=2, group_size=2)
    for t in admit_all(buf):  # (0+2)*2 = 4 episodes = 2 groups
        fill(buf, t)
    assert buf.take_batch(0, batch_size=6) is None
    assert len(buf.take_batch(0, batch_size=4)) == 4
    with pytest.raises(StreamBufferError, match="multiple of 2"):
        buf.take_batch(0, batch_size=3)


# ---- abort and errors ---------------------------------------------------------------------
def test_abort_drops_whole_group_with_reason():
    # k=3: one episode buffered, two in flight; abort drops all 3 under the reason.
    buf = StreamBuffer(max_staleness=0, batch_size=3, group_size=3)
    t = buf.try_admit("w")
    buf.put(t, "a", meta(t, 0))
    assert (buf.metrics()["buffered"], buf.metrics()["in_flight"]) == (1, 2)
    buf.abort(t, "engine_error")
    m = buf.metrics()
    assert m["dropped_by_reason"] == {"engine_error": 3}
    assert (m["admitted"], m["dropped"], m["buffered"], m["in_flight"]) == (3, 3, 0, 0)
    with pytest.raises(StreamBufferError, match="ticket 0 is closed"):
        buf.put(t, "b", meta(t, 1))
    with pytest.raises(StreamBufferError, match="ticket 0 is closed"):
        buf.abort(t, "again")


def test_misuse_errors_name_ticket_and_version():
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2)
    t = buf.try_admit("w")
    buf.put(t, "a", meta(t, 0))
    with pytest.raises(StreamBufferError, match="ticket 0: sample_index 0 put twice"):
        buf.put(t, "a", meta(t, 0))
    with pytest.raises(StreamBufferError, match="sample_index 2 not in 0..1"):
        buf.put(t, "a", meta(t, 2))
    with pytest.raises(StreamBufferError, match="group_id 'other'"):
        buf.put(t, "a", EpisodeMeta("other", 1, 1, 0, 0, 0.0))
    with pytest.raises(StreamBufferError, match="bad versions min=2 max=1"):
        buf.put(t, "a", meta(t, 1, min_version=2, max_version=1))
    forged = type(t)(7, "w", 0, 2)
    with pytest.raises(StreamBufferError, match="ticket 7 is never issued"):
        buf.put(forged, "a", meta(forged, 0))
    buf.set_version(3)
    with pytest.raises(StreamBufferError, match="3 -> 2"):
        buf.set_version(2)
    with pytest.raises(StreamBufferError, match="3 -> 1"):
        buf.take_batch(1)
    with pytest.raises(StreamBufferError, match="multiple of group_size"):
        StreamBuffer(max_staleness=0, batch_size=3, group_size=2)
    assert conserved(buf.metrics())


# ---- checkpoint -----------------------------------------------------------------------------
def test_state_dict_round_trip_through_json():
    # eta=1 B=k=2: capacity 4 at v0 -> tickets 0, 1. Consume ticket 0 at v0 (lag 0).
    buf = StreamBuffer(max_staleness=1, batch_size=2, group_size=2)
    t0, t1 = buf.try_admit("w"), buf.try_admit("w")
    fill(buf, t0, tokens=5)
    buf.take_batch(0)
    buf.abort(t1, "worker_died")  # live = 2 consumed
    buf.set_version(1)  # capacity (1+1+1)*2 = 6 -> tickets 2 (complete at save), 3 (half done)
    t2, t3 = buf.try_admit("w"), buf.try_admit("w")
    assert buf.try_admit("w") is None
    fill(buf, t2, min_version=1)
    buf.put(t3, "half", meta(t3, 0, min_version=1))
    state = json.loads(json.dumps(buf.state_dict()))
    assert StreamBuffer.restore_keys(state) == [(2, 0), (2, 1)]

    new = StreamBuffer(max_staleness=1, batch_size=2, group_size=2)
    with pytest.raises(StreamBufferError, match=r"\(2, 1\)"):
        new.load_state_dict(state, {(2, 0): "r0"})
    new.load_state_dict(state, {(2, 0): "r0", (2, 1): "r1"})
    m = new.metrics()
    # admitted 8 = consumed 2 + dropped (2 worker_died + 2 resume) + buffered 2
    assert m["dropped_by_reason"] == {"worker_died": 2, "resume": 2}
    assert (m["admitted"], m["consumed"], m["buffered"], m["in_flight"], m["version"]) == (8, 2, 2, 0, 1)
    assert m["staleness_episodes"] == {0: 2} and m["staleness_tokens"] == {0: 10}
    with pytest.raises(StreamBufferError, match="ticket 3 is closed"):
        new.put(t3, "late", meta(t3, 1, min_version=1))
    assert [e.handle for e in new.take_batch(1)] == ["r0", "r1"]
    assert new.try_admit("w").ticket_id == 4
    with pytest.raises(StreamBufferError, match="fresh buffer"):
        new.load_state_dict(state, {(2, 0): "r0", (2, 1): "r1"})
    with pytest.raises(StreamBufferError, match="checkpoint batch_size=2"):
        StreamBuffer(max_staleness=1, batch_size=4, group_size=2).load_state_dict(state, {})


# ---- property: conservation under random operations ---------------------------------------
class BufferMachine(RuleBasedStateMachine):
    """Random admit/put/abort/take/version/checkpoint; no episode handed out twice or stale."""

    drop_uniform = False  # the dynamic-sampling variant below turns it on

    def __init__(self):
        super().__init__()
        self.eta, self.k = 1, 2
        self.buf = self.new_buffer()
        self.open: dict[int, tuple] = {}  # ticket_id -> (ticket, set of indices put)
        self.consumed: set[str] = set()

    @rule(n=st.integers(1, 3))
    def admit(self, n):
        for _ in range(n):
            if (t := self.buf.try_admit("w")) is not None:
                self.open[t.ticket_id] = (t, set())

    def new_buffer(self):
        return StreamBuffer(
            max_staleness=self.eta, batch_size=4, group_size=self.k, drop_uniform_groups=self.drop_uniform
        )

    @rule(pick=st.integers(0, 100), lag=st.integers(0, 2), whole=st.integers(0, 2), bits=st.integers(0, 3))
    def put(self, pick, lag, whole, bits):
        if not self.open:
            return
        t, done = list(self.open.values())[pick % len(self.open)]
        for index in sorted(set(range(self.k)) - done)[: None if whole else 1]:
            min_version = max(0, self.buf.version - lag)
            reward = float((bits >> index) & 1)  # bits 0 or 3: a uniform group
            self.buf.put(t, f"{t.ticket_id}.{index}", meta(t, index, min_version, self.buf.version, reward=reward))
            done.add(index)
        if len(done) == self.k:
            del self.open[t.ticket_id]  # now buffered or dropped stale; the worker is done

    @rule(pick=st.integers(0, 100), dice=st.integers(0, 3))
    def abort(self, pick, dice):
        if self.open and dice == 0:
            t, _ = list(self.open.values())[pick % len(self.open)]
            self.buf.abort(t, "killed")
            del self.open[t.ticket_id]

    @rule(dice=st.integers(0, 3))
    def take(self, dice):
        version = self.buf.version + (dice == 0)  # the learner moves on a quarter of the time
        batch = self.buf.take_batch(version)
        for e in batch or []:
            assert e.handle not in self.consumed
            assert version - e.meta.min_version <= self.eta
            self.consumed.add(e.handle)
        if self.drop_uniform and batch:  # groups of k = 2, one after the other
            assert all(a.meta.reward != b.meta.reward for a, b in zip(batch[::2], batch[1::2]))

    @rule(dice=st.integers(0, 5))
    def checkpoint_and_resume(self, dice):
        if dice:
            return
        state = json.loads(json.dumps(self.buf.state_dict()))
        handles = {key: f"{key[0]}.{key[1]}" for key in StreamBuffer.restore_keys(state)}
        self.buf = self.new_buffer()
        self.buf.load_state_dict(state, handles)
        self.open.clear()  # workers restart: their tickets are closed

    @invariant()
    def counters_conserved(self):
        m = self.buf.metrics()
        assert conserved(m)
        assert m["admitted"] - m["dropped"] <= m["capacity"]
        assert m["consumed"] == len(self.consumed)
        assert m["max_consumed_staleness"] <= self.eta


BufferMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestBufferMachine = BufferMachine.TestCase


class UniformDropMachine(BufferMachine):
    """The same random operations with dynamic sampling on: conservation holds, and every
    group handed out has unequal rewards."""

    drop_uniform = True


UniformDropMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestUniformDropMachine = UniformDropMachine.TestCase


def test_a_dead_workers_incomplete_groups_are_dropped_and_its_complete_ones_kept():
    buf = StreamBuffer(max_staleness=3, batch_size=2, group_size=2)  # room for 4 groups
    done, half, empty, other = buf.try_admit("w0"), buf.try_admit("w0"), buf.try_admit("w0"), buf.try_admit("w1")
    for i in range(2):
        buf.put(done, f"d{i}", meta(done, i))
    buf.put(half, "h0", meta(half, 0))
    # half (1 buffered + 1 in flight) and empty (2 in flight) go; done and w1's ticket stay.
    assert buf.abort_worker("w0", "worker_died") == 4
    m = buf.metrics()
    assert m["dropped_by_reason"] == {"worker_died": 4} and m["buffered"] == 2 and m["in_flight"] == 2
    assert [e.handle for e in buf.take_batch(0)] == ["d0", "d1"]
    for ticket in (half, empty):
        with pytest.raises(StreamBufferError, match="closed"):
            buf.put(ticket, "late", meta(ticket, 1))
    buf.put(other, "o0", meta(other, 0))


# ---- dynamic sampling (DAPO) -----------------------------------------------------------
def put_rewards(buf, ticket, rewards, min_version=0):
    for i, r in enumerate(rewards):
        buf.put(ticket, f"h{ticket.ticket_id}.{i}", meta(ticket, i, min_version, reward=r))


def test_a_group_with_equal_rewards_is_dropped_and_its_slots_return():
    # B=4, k=2, eta=0: capacity 4 = 2 groups. All-correct (1, 1) and all-wrong (0, 0) go as
    # zero_variance; (1, 0) stays. The 4 dropped slots let 2 more groups in.
    buf = StreamBuffer(max_staleness=0, batch_size=4, group_size=2, drop_uniform_groups=True)
    right, wrong = admit_all(buf)
    put_rewards(buf, right, [1.0, 1.0])
    put_rewards(buf, wrong, [0.0, 0.0])
    m = buf.metrics()
    assert m["dropped_by_reason"] == {"zero_variance": 4} and m["buffered"] == 0 and conserved(m)
    mixed, partial = admit_all(buf)
    put_rewards(buf, mixed, [1.0, 0.0])
    put_rewards(buf, partial, [0.5, 0.5])  # equal partial credit: no signal either
    assert buf.take_batch(0) is None  # only one group with signal: not yet a batch
    third = admit_all(buf)
    assert len(third) == 1
    put_rewards(buf, third[0], [0.0, 0.5])
    assert [e.meta.reward for e in buf.take_batch(0)] == [1.0, 0.0, 0.0, 0.5]
    m = buf.metrics()
    assert m["dropped_by_reason"] == {"zero_variance": 6} and m["consumed"] == 4 and conserved(m)


def test_without_dynamic_sampling_equal_rewards_are_trained():
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2)
    (t,) = admit_all(buf)
    put_rewards(buf, t, [1.0, 1.0])
    assert len(buf.take_batch(0)) == 2 and buf.metrics()["dropped"] == 0


def test_a_stale_uniform_group_counts_as_stale():
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2, drop_uniform_groups=True)
    (t,) = admit_all(buf)
    buf.set_version(1)
    put_rewards(buf, t, [0.0, 0.0], min_version=0)  # lag 1 > eta 0 and uniform
    assert buf.metrics()["dropped_by_reason"] == {"stale": 2}


def test_an_incomplete_group_is_not_judged():
    buf = StreamBuffer(max_staleness=0, batch_size=2, group_size=2, drop_uniform_groups=True)
    (t,) = admit_all(buf)
    buf.put(t, "a", meta(t, 0, reward=1.0))
    assert buf.metrics()["dropped"] == 0 and buf.metrics()["buffered"] == 1


def test_too_many_uniform_groups_since_the_last_batch_stop_the_run():
    # B=2, k=2: one group a batch; max_uniform_batches=2 -> the error after 2 dropped groups.
    buf = StreamBuffer(max_staleness=3, batch_size=2, group_size=2, drop_uniform_groups=True, max_uniform_batches=2)
    a, b, c, d = admit_all(buf)
    put_rewards(buf, a, [1.0, 0.0])
    put_rewards(buf, b, [1.0, 1.0])
    assert len(buf.take_batch(0)) == 2  # a batch was ready: the count starts again after it
    put_rewards(buf, c, [1.0, 1.0])
    assert buf.take_batch(0) is None  # 1 dropped since the last batch: wait
    put_rewards(buf, d, [0.0, 0.0])
    with pytest.raises(StreamBufferError, match="dynamic sampling dropped 2 groups"):
        buf.take_batch(0)
    assert conserved(buf.metrics())


def test_dynamic_sampling_needs_groups_of_two():
    with pytest.raises(StreamBufferError, match="group_size >= 2"):
        StreamBuffer(max_staleness=0, batch_size=2, group_size=1, drop_uniform_groups=True)
