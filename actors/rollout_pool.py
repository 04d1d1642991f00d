"""The rollout workers of a run: their placement, their generation loops, and their restarts.

Each worker is a restartable RolloutActor placed by `ActorKind.options()` (actors/placement.py)
and running `run` (its generation loop) until `stop`. A worker dies with its process or with
its whole node; Ray restarts it, on the same node or, when that node is gone, on any node
that has its resources (a surviving node, or the lost one once it is back). That can take
from seconds to however long the cluster lacks such a node, so the pool never waits for it:

- `check` (called by the driver between learner steps and while it waits for a batch)
  notices a loop that ended with the worker gone, has the buffer drop that worker's
  incomplete groups as "worker_died" (its complete groups stay: the buffer owns their
  data), and from then on probes the worker with the current weights, at most once a
  second, without blocking; once a probe lands, the worker is given the weights of the
  version the learner has reached meanwhile, and its loop starts again. A worker not back
  after WORKER_RESTART_S is an error naming train.rollout_resources.
- `call` (weights and stats after each step) skips workers being restarted and counts a
  worker that fails meanwhile as gone (None), so one lost node never stalls the learner.
- `evaluate` runs on a worker that is up, and on another if that one dies meanwhile.

Not covered: a worker whose call failed with ActorUnavailableError while its process lived
on (a network fault, not a lost node) is treated as dead; its later groups are refused by
the buffer (their tickets were closed), which ends that loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ray
from ray import exceptions as ray_exceptions

from actors.placement import ActorKind

# A rollout worker that died (RayActorError) or is being restarted (ActorUnavailableError,
# a subclass); for weight loads also an argument lost with the learner's node.
WORKER_GONE: tuple[type[Exception], ...] = (ray_exceptions.RayActorError,)
LOAD_FAILED: tuple[type[Exception], ...] = (ray_exceptions.RayActorError, ray_exceptions.ObjectLostError)
WORKER_RESTART_S = 300.0  # how long a worker may take to come back (its node restarted, or another found)
PROBE_EVERY_S = 1.0  # how often a worker being restarted is asked to take the weights


@dataclass
class _Restart:
    deadline: float
    probe: Any = None  # the pending update_weights ref, or None
    probe_version: int = -1
    next_probe: float = 0.0


class RolloutPool:
    def __init__(self, actor_class: Any, kind: ActorKind, policy: str, config: Any, run_dir: Path):
        self.kind = kind
        self.workers = [
            actor_class.options(name=f"treadle-rollout-{i}", **kind.options()).remote(
                f"rollout-{i}", policy, config, str(run_dir.resolve() / "rollouts" / f"rollout-{i}")
            )
            for i in range(kind.count)
        ]
        self.loops: list[Any] = [None] * kind.count  # each worker's `run` ref; None while it is restarted
        self.restarts: dict[int, _Restart] = {}
        self.num_restarts = 0

    def start(self, buffer: Any, problems: list) -> None:
        """Start every worker's generation loop; `problems` is [ref] to the problem list."""
        self.buffer, self.problems = buffer, problems
        self.loops = [w.run.remote(buffer, problems) for w in self.workers]

    def call(self, method: str, *args: Any) -> list:
        """`method` on every worker that is up; None for one being restarted or gone meanwhile."""
        refs = {i: getattr(w, method).remote(*args) for i, w in enumerate(self.workers) if i not in self.restarts}
        results = []
        for i in range(len(self.workers)):
            try:
                results.append(ray.get(refs[i]) if i in refs else None)
            except LOAD_FAILED:
                results.append(None)  # `check` sees its loop end and restarts it
        return results

    def check(self, weights: Callable[[], Any], version: int) -> None:
        """Notice dead workers and bring back restarted ones, without waiting for either.
        `weights()` is a reference to the weights of `version` (asked for only when needed)."""
        running = [ref for ref in self.loops if ref is not None]
        ended, _ = ray.wait(running, num_returns=len(running), timeout=0)
        for ref in ended:
            i = self.loops.index(ref)
            try:
                ray.get(ref)
                continue  # a loop that returned normally (only after stop)
            except WORKER_GONE:
                pass
            ray.get(self.buffer.abort_worker.remote(f"rollout-{i}", "worker_died"))
            self.num_restarts += 1
            self.loops[i] = None
            self.restarts[i] = _Restart(deadline=time.monotonic() + WORKER_RESTART_S)
        for i, restart in list(self.restarts.items()):
            if restart.probe is not None and ray.wait([restart.probe], timeout=0)[0]:
                if self._caught_up(i, restart, weights, version):
                    del self.restarts[i]
                    self.loops[i] = self.workers[i].run.remote(self.buffer, self.problems)
                    continue
            now = time.monotonic()
            if now > restart.deadline:
                raise RuntimeError(
                    f"rollout-{i} lost its process or node and was not back within {WORKER_RESTART_S:.0f} s: no node "
                    f"had room for it ({self.kind.resources_key}={self.kind.resources or '[]'}, "
                    f"{self.kind.gpus_key}={self.kind.gpus}); restart the lost node or add one, then "
                    f"`treadle train --resume RUN_DIR`"
                )  # fmt: skip
            if restart.probe is None and now >= restart.next_probe:
                restart.probe = self.workers[i].update_weights.remote(weights(), version)
                restart.probe_version, restart.next_probe = version, now + PROBE_EVERY_S

    def _caught_up(self, i: int, restart: _Restart, weights: Callable[[], Any], version: int) -> bool:
        """Whether worker i's finished probe landed (it is back) and it holds the weights of
        `version` now (the learner may have stepped since the probe was sent)."""
        probe, restart.probe = restart.probe, None
        try:
            ray.get(probe)
            if restart.probe_version != version:  # a live worker takes them in milliseconds
                ray.get(self.workers[i].update_weights.remote(weights(), version))
            return True
        except LOAD_FAILED:
            return False  # still restarting (or the weights went with the learner's node): probe again

    def evaluate(self, held_out: list, trained_keys: Any, weights: Callable[[], Any], version: int) -> dict:
        """Greedy held-out accuracy on a worker that is up (another if it dies meanwhile)."""
        deadline = time.monotonic() + WORKER_RESTART_S
        while True:
            for i, worker in enumerate(self.workers):
                if i in self.restarts:
                    continue
                try:
                    return ray.get(worker.evaluate.remote(held_out, trained_keys))
                except WORKER_GONE:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no rollout worker was up to evaluate for {WORKER_RESTART_S:.0f} s")
            time.sleep(PROBE_EVERY_S)
            self.check(weights, version)

    def stop(self) -> None:
        """End the loops: groups being generated finish and are buffered. A worker that died
        at the end has its incomplete groups dropped as "worker_died", as during the run."""
        for i, worker in enumerate(self.workers):
            if i not in self.restarts:
                worker.stop.remote()
        for i, ref in enumerate(self.loops):
            if ref is None:
                continue
            try:
                ray.get(ref)
            except WORKER_GONE:
                ray.get(self.buffer.abort_worker.remote(f"rollout-{i}", "worker_died"))

    def kill(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
