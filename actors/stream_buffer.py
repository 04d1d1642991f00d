"""The stream buffer between rollout workers and learners: admission, staleness, groups.

Plain Python (stdlib only): the Ray actor in `actors/` wraps this class and is the only
place Ray appears. Episode handles are opaque (Ray ObjectRefs in production, any object
in tests); the buffer reads only their `EpisodeMeta`. All counts are in episodes.

Rules (DESIGN.md "Staleness"), with eta = `max_staleness`, B = `batch_size` episodes per
learner step, k = `group_size` samples of one problem:

- **Admission is per group.** `try_admit` reserves all k slots of one group at once, so
  a group is never split by the capacity limit. It succeeds iff
  `live + k <= (version + eta + 1) * B` where `live = admitted - dropped` (episodes in
  flight, buffered or consumed). B must be a multiple of k, so this is the AReaL rule
  `live < (version + eta + 1) * B` checked per episode. With eta = 0 and no drops, at
  version v exactly (v + 1) * B episodes may ever have been started: synchronous
  training through the same code. Dropped episodes give their slots back (unlike the
  literal AReaL count of all admissions): otherwise one abort or stale drop at eta = 0
  would leave the learner short of a batch forever.
- **A group is handed out whole or not at all.** `take_batch` returns complete groups in
  admission (ticket) order, skipping groups still being generated (no head-of-line
  blocking), and only when B episodes of fresh complete groups are ready.
- **Hard staleness bound.** A complete group containing an episode with
  `learner_version - min_version > eta` is dropped whole with reason "stale" (a partial
  group would bias the group-normalized advantages of its siblings). Lag eta is allowed,
  eta + 1 is not. Staleness is checked when a group completes, when the version moves
  and at every `take_batch`; a group still being generated waits until it completes.
- **Abort drops the whole group** (`abort(ticket, reason)`): its buffered siblings and
  its in-flight slots are counted as dropped with `reason`; the slots return to the
  capacity, and the ticket is closed (later `put`s on it are errors). Nothing is
  re-issued: the worker simply asks for a new ticket. `abort_worker` does this for every
  incomplete group of a worker that died.
- **Dynamic sampling** (DAPO; `drop_uniform_groups`): a group whose k verified rewards
  are all equal carries no signal under a group baseline, so when it completes it is
  dropped whole with reason "zero_variance" (after the staleness check: a stale group
  counts as stale). Its slots return to the capacity like any drop, so the workers
  generate other groups and the learner's batch is made of groups with signal. With
  `max_uniform_batches` > 0, `take_batch` raises once that many batches' worth of groups
  (B / k each) were dropped so since the last batch handed out and none is ready: a task
  the policy always or never solves would otherwise stall the run forever.
- **Conservation**: admitted == consumed + dropped + in_flight + buffered, asserted after
  every operation.

Not covered: episode data (Arrow batches), per-token versions (the staleness histogram
is per episode, by its oldest token's lag, an upper bound for all its tokens), and
groups of varying size (every group has exactly k episodes).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Hashable, Mapping

STALE = "stale"
RESUME = "resume"
ZERO_VARIANCE = "zero_variance"


class StreamBufferError(Exception):
    """Misuse of the buffer: unknown or closed ticket, double put, version going backwards."""


@dataclass(frozen=True)
class Ticket:
    """A reservation of one group's k episode slots, returned by `try_admit`."""

    ticket_id: int
    """Unique and increasing; the buffer's FIFO order is ticket order."""
    worker_id: Hashable
    """The rollout worker that holds the ticket (recorded for metrics and debugging)."""
    admitted_version: int
    """The buffer's (learner's published) version when the group was admitted."""
    group_size: int
    """k: the number of episodes the worker must `put` (sample_index 0..k-1)."""


@dataclass(frozen=True)
class EpisodeMeta:
    """What the buffer knows about one episode besides its opaque handle."""

    group_id: Hashable
    """The problem the group samples; all k episodes of a ticket must share it."""
    sample_index: int
    """Position 0..k-1 in the group; putting the same index twice is an error."""
    num_tokens: int
    """Generated (trained) tokens, for the token-weighted staleness histogram."""
    min_version: int
    """Policy version of the oldest generated token: the staleness bound reads this."""
    max_version: int
    """Policy version of the newest generated token."""
    reward: float
    reason: str = ""
    """The verdict's reason (reward.Reason): the driver counts them per step."""
    critical_path_tokens: int = 0
    """Generated tokens on the episode's longest chain of threads (num_tokens for one
    thread; 0 in checkpoints written before it was recorded)."""


@dataclass(frozen=True)
class BufferedEpisode:
    """One entry handed to the learner by `take_batch`."""

    ticket: Ticket
    meta: EpisodeMeta
    handle: Any


@dataclass
class _Group:
    ticket: Ticket
    episodes: dict[int, BufferedEpisode] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.episodes) == self.ticket.group_size

    def max_lag(self, version: int) -> int:
        return max(version - e.meta.min_version for e in self.episodes.values())

    @property
    def uniform(self) -> bool:
        """Complete, and every episode's reward equal to the first's."""
        rewards = [e.meta.reward for e in self.episodes.values()]
        return self.complete and all(r == rewards[0] for r in rewards)


class StreamBuffer:
    """Admission control, hard staleness bound and whole-group hand-out (see module doc)."""

    def __init__(
        self,
        *,
        max_staleness: int,
        batch_size: int,
        group_size: int,
        version: int = 0,
        drop_uniform_groups: bool = False,
        max_uniform_batches: int = 0,
    ):
        if max_staleness < 0:
            raise StreamBufferError(f"max_staleness must be >= 0, got {max_staleness}")
        if group_size < 1 or batch_size < 1 or batch_size % group_size:
            raise StreamBufferError(
                f"batch_size ({batch_size}) must be a positive multiple of group_size ({group_size})"
            )
        if drop_uniform_groups and group_size < 2:
            raise StreamBufferError("drop_uniform_groups needs group_size >= 2: every group of one is uniform")
        self.drop_uniform_groups = drop_uniform_groups
        self.max_uniform_groups = max_uniform_batches * (batch_size // group_size)
        self._uniform_since_batch = 0  # groups dropped as zero_variance since the last batch handed out
        self.max_staleness = max_staleness
        self.batch_size = batch_size
        self.group_size = group_size
        self.version = version
        self._next_ticket_id = 0
        self._groups: dict[int, _Group] = {}  # open tickets, insertion (= admission) order
        self._num_admitted = 0
        self._num_consumed = 0
        self._dropped: Counter[str] = Counter()
        self._lag_episodes: Counter[int] = Counter()
        self._lag_tokens: Counter[int] = Counter()

    # ---- admission -------------------------------------------------------------------
    def capacity(self) -> int:
        """Most live (admitted, not dropped) episodes allowed at the current version."""
        return (self.version + self.max_staleness + 1) * self.batch_size

    def can_admit(self) -> bool:
        return self._num_admitted - self.num_dropped + self.group_size <= self.capacity()

    def try_admit(self, worker_id: Hashable) -> Ticket | None:
        """Reserve one group of k slots, or None if the capacity rule says wait."""
        if not self.can_admit():
            return None
        ticket = Ticket(self._next_ticket_id, worker_id, self.version, self.group_size)
        self._next_ticket_id += 1
        self._groups[ticket.ticket_id] = _Group(ticket)
        self._num_admitted += self.group_size
        self._check()
        return ticket

    # ---- episodes in -----------------------------------------------------------------
    def put(self, ticket: Ticket, handle: Any, meta: EpisodeMeta) -> None:
        """Buffer one finished episode of `ticket`'s group."""
        group = self._open_group(ticket)
        k = ticket.group_size
        if not 0 <= meta.sample_index < k:
            raise StreamBufferError(f"ticket {ticket.ticket_id}: sample_index {meta.sample_index} not in 0..{k - 1}")
        if meta.sample_index in group.episodes:
            raise StreamBufferError(f"ticket {ticket.ticket_id}: sample_index {meta.sample_index} put twice")
        if meta.min_version > meta.max_version or meta.min_version < 0:
            raise StreamBufferError(
                f"ticket {ticket.ticket_id}: bad versions min={meta.min_version} max={meta.max_version}"
            )
        if group.episodes:
            first = next(iter(group.episodes.values())).meta.group_id
            if meta.group_id != first:
                raise StreamBufferError(
                    f"ticket {ticket.ticket_id}: group_id {meta.group_id!r} differs from {first!r}"
                )
        group.episodes[meta.sample_index] = BufferedEpisode(ticket, meta, handle)
        if group.complete:
            self._drop_stale()
            self._drop_uniform()
        self._check()

    def abort(self, ticket: Ticket, reason: str) -> None:
        """Drop `ticket`'s whole group (buffered siblings and in-flight slots) with `reason`."""
        self._open_group(ticket)
        self._drop_group(ticket.ticket_id, reason)
        self._check()

    def abort_worker(self, worker_id: Hashable, reason: str) -> int:
        """Drop every incomplete group of `worker_id` (it died: its groups in flight will never
        be finished); complete groups stay. Returns the episodes dropped."""
        doomed = [t for t, g in self._groups.items() if g.ticket.worker_id == worker_id and not g.complete]
        for ticket_id in doomed:
            self._drop_group(ticket_id, reason)
        self._check()
        return len(doomed) * self.group_size

    # ---- versions and episodes out ---------------------------------------------------
    def set_version(self, version: int) -> None:
        """The learner published `version`; admission widens and stale groups are dropped."""
        if version < self.version:
            raise StreamBufferError(f"version went backwards: {self.version} -> {version}")
        self.version = version
        self._drop_stale()
        self._check()

    def take_batch(self, learner_version: int, batch_size: int | None = None) -> list[BufferedEpisode] | None:
        """Hand out `batch_size` episodes (default B) of fresh complete groups, FIFO, or None.

        `learner_version` advances the buffer's version like `set_version` first. Entries
        come group after group, each group in sample_index order.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size < 1 or batch_size % self.group_size:
            raise StreamBufferError(f"batch_size {batch_size} is not a positive multiple of {self.group_size}")
        self.set_version(learner_version)
        ready = [g for g in self._groups.values() if g.complete]
        if len(ready) * self.group_size < batch_size:
            if self.max_uniform_groups and self._uniform_since_batch >= self.max_uniform_groups:
                raise StreamBufferError(
                    f"dynamic sampling dropped {self._uniform_since_batch} groups whose rewards were all equal since "
                    f"the last batch, and no batch is ready: the policy solves every problem or none; use easier or "
                    f"harder problems, or turn rl.dynamic_sampling off (or raise rl.dynamic_sampling_max_batches)"
                )
            return None
        self._uniform_since_batch = 0
        batch: list[BufferedEpisode] = []
        for group in ready[: batch_size // self.group_size]:
            del self._groups[group.ticket.ticket_id]
            for index in sorted(group.episodes):
                episode = group.episodes[index]
                lag = learner_version - episode.meta.min_version
                assert lag <= self.max_staleness, "stale group survived _drop_stale"
                self._lag_episodes[lag] += 1
                self._lag_tokens[lag] += episode.meta.num_tokens
                batch.append(episode)
        self._num_consumed += batch_size
        self._check()
        return batch

    # ---- accounting ------------------------------------------------------------------
    @property
    def num_dropped(self) -> int:
        return sum(self._dropped.values())

    def metrics(self) -> dict[str, Any]:
        """Counters (episodes), buffer depth and the consumed-staleness histograms."""
        in_flight = sum(self.group_size - len(g.episodes) for g in self._groups.values())
        buffered = sum(len(g.episodes) for g in self._groups.values())
        ready_groups = sum(g.complete for g in self._groups.values())
        return {
            "version": self.version,
            "capacity": self.capacity(),
            "admitted": self._num_admitted,
            "consumed": self._num_consumed,
            "dropped": self.num_dropped,
            "dropped_by_reason": dict(self._dropped),
            "in_flight": in_flight,
            "buffered": buffered,
            "buffer_depth_groups": ready_groups,
            "buffer_depth_episodes": ready_groups * self.group_size,
            "staleness_episodes": dict(sorted(self._lag_episodes.items())),
            "staleness_tokens": dict(sorted(self._lag_tokens.items())),
            "max_consumed_staleness": max(self._lag_episodes, default=0),
        }

    def _check(self) -> None:
        m = self.metrics()
        assert m["admitted"] == m["consumed"] + m["dropped"] + m["in_flight"] + m["buffered"], m

    def _open_group(self, ticket: Ticket) -> _Group:
        group = self._groups.get(ticket.ticket_id)
        if group is None:
            state = "never issued" if ticket.ticket_id >= self._next_ticket_id else "closed (consumed, dropped or aborted)"
            raise StreamBufferError(f"ticket {ticket.ticket_id} is {state}")
        return group

    def _drop_group(self, ticket_id: int, reason: str) -> None:
        self._groups.pop(ticket_id)
        self._dropped[reason] += self.group_size  # buffered and in-flight episodes alike

    def _drop_stale(self) -> None:
        for ticket_id, group in list(self._groups.items()):
            if group.complete and group.max_lag(self.version) > self.max_staleness:
                self._drop_group(ticket_id, STALE)

    def _drop_uniform(self) -> None:
        if not self.drop_uniform_groups:
            return
        for ticket_id, group in list(self._groups.items()):
            if group.uniform:
                self._drop_group(ticket_id, ZERO_VARIANCE)
                self._uniform_since_batch += 1

    # ---- checkpoint ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters, version and every open group's metadata (no handles); JSON-safe as
        long as worker ids and group ids are str or int.

        The caller checkpoints the data of each buffered episode of a complete group,
        keyed by (ticket_id, sample_index) as listed by `restore_keys(state)`.
        """
        return {
            "max_staleness": self.max_staleness,
            "batch_size": self.batch_size,
            "group_size": self.group_size,
            "version": self.version,
            "next_ticket_id": self._next_ticket_id,
            "num_admitted": self._num_admitted,
            "num_consumed": self._num_consumed,
            "dropped_by_reason": dict(self._dropped),
            "staleness": [[lag, self._lag_episodes[lag], self._lag_tokens[lag]] for lag in sorted(self._lag_episodes)],
            "groups": [
                {"ticket": asdict(g.ticket), "episodes": [asdict(g.episodes[i].meta) for i in sorted(g.episodes)]}
                for g in self._groups.values()
            ],
        }

    def buffered_handles(self) -> dict[tuple[int, int], Any]:
        """{(ticket_id, sample_index): handle} of every episode of a complete group: the
        episodes whose data a checkpoint must keep (the keys of `restore_keys`)."""
        return {
            (ticket_id, index): episode.handle
            for ticket_id, group in self._groups.items()
            if group.complete
            for index, episode in group.episodes.items()
        }

    @staticmethod
    def restore_keys(state: Mapping[str, Any]) -> list[tuple[int, int]]:
        """(ticket_id, sample_index) of the episodes whose handles `load_state_dict` needs."""
        return [
            (g["ticket"]["ticket_id"], e["sample_index"])
            for g in state["groups"]
            if len(g["episodes"]) == g["ticket"]["group_size"]
            for e in g["episodes"]
        ]

    def load_state_dict(self, state: Mapping[str, Any], handles: Mapping[tuple[int, int], Any]) -> None:
        """Resume into a fresh buffer; `handles` re-supplies each of `restore_keys(state)`.

        Complete groups come back buffered in their old order. Incomplete groups (their
        workers are gone after a restart) are dropped whole with reason "resume", so
        every admitted episode stays accounted for and none is handed out twice. Tickets
        issued before the checkpoint are closed; ticket ids continue where they stopped.
        """
        if self._num_admitted:
            raise StreamBufferError("load_state_dict needs a fresh buffer (episodes were already admitted)")
        for key in ("max_staleness", "batch_size", "group_size"):
            if state[key] != getattr(self, key):
                raise StreamBufferError(f"checkpoint {key}={state[key]} but this buffer has {getattr(self, key)}")
        missing = [key for key in self.restore_keys(state) if key not in handles]
        if missing:
            raise StreamBufferError(f"no handle for buffered episodes (ticket_id, sample_index) {missing}")
        self.version = state["version"]
        self._next_ticket_id = state["next_ticket_id"]
        self._num_admitted = state["num_admitted"]
        self._num_consumed = state["num_consumed"]
        self._dropped = Counter(state["dropped_by_reason"])
        self._lag_episodes = Counter({lag: n for lag, n, _ in state["staleness"]})
        self._lag_tokens = Counter({lag: t for lag, _, t in state["staleness"]})
        for g in state["groups"]:
            ticket = Ticket(**g["ticket"])
            if len(g["episodes"]) < ticket.group_size:
                self._dropped[RESUME] += ticket.group_size
                continue
            group = _Group(ticket)
            for m in g["episodes"]:
                meta = EpisodeMeta(**m)
                group.episodes[meta.sample_index] = BufferedEpisode(ticket, meta, handles[(ticket.ticket_id, meta.sample_index)])
            self._groups[ticket.ticket_id] = group
        self._drop_stale()
        self._drop_uniform()
        self._check()
