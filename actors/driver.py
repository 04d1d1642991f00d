"""The training driver: builds the actors from the config and runs the asynchronous loop.

    rollout workers --(Arrow batches, ray.put)--> BufferActor --(whole fresh groups)--> LearnerActor
          ^                                                                              |
          +-------------------- weights (numpy dict, ray.put), version += 1 -------------+

Rollout workers generate continuously; the buffer admits new groups only within the
capacity the staleness bound allows and never hands the learner a group with a token more
than `train.max_staleness` versions old. After each step the driver publishes the new
weights to every worker (they land between decode steps) and then tells the buffer the
new version, so that no group is admitted against weights the workers do not hold yet.
Every generated episode is appended to a Parquet rollout log under RUN/rollouts/<worker>/
(actors/rollout_log.py; the episode table's schema). Each step is logged (actors/run_log.py:
train_metrics.jsonl, the consumed-episode ledger, TensorBoard) and sets the `treadle_*`
metrics of the Ray dashboard (actors/dashboard_metrics.py); every `train.eval_every`
steps (and after the last) a rollout worker evaluates held-out problems greedily with
the weights it holds. The loop is checkpointed every `train.checkpoint_every` steps and
after the last (actors/run_checkpoint.py), or after the step in progress when SIGTERM
(`ray job stop`) or SIGINT asks it to stop (actors/stop_request.py); `resume` goes on
from such a checkpoint with the buffered episodes it holds, and so does the driver
itself when a learner dies (it rebuilds every actor from the newest checkpoint; the
steps after it are undone and redone). A rollout worker that dies, alone or with its
node, is restarted by Ray and caught up without going back, while the learner goes on
(actors/rollout_pool.py). On a cluster, the actors are placed by the resources they ask
for (actors/placement.py); the buffer stays on the driver's node, whose object store
holds the episodes it owns. The final policy is saved to RUN/final (with `model.lora`,
the merged model, its adapter in peft's format in RUN/final/adapter/; learner/lora.py).
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ray
from ray import exceptions as ray_exceptions

from actors import placement, run_checkpoint
from actors.errors import UsageError
from actors.progress import Progress, quiet_libraries
from actors.run_checkpoint import LoopCheckpoint
from actors.run_inputs import RunInputs, json_key, prepare_inputs
from actors.stop_request import StopRequest

CONFIG_FILE = "config.yaml"


def save_config(config: Any, run_dir: Path) -> None:
    import yaml

    from configs.typed import to_dict

    (run_dir / CONFIG_FILE).write_text(
        "# The resolved config of this run; `treadle train --resume` reads it.\n"
        + yaml.safe_dump(to_dict(config), sort_keys=False)
    )


def run_training(config: Any, run_dir: Path, resume: bool = False) -> dict:
    """Run `config.train.steps` learner steps in `run_dir`, or go on from its newest checkpoint."""
    quiet_libraries()
    inputs = prepare_inputs(config)  # everything that can be refused is refused before Ray starts (actors/run_inputs.py)
    placement.check_config(config.train, config.rl.device, config.engine.device)
    state = run_checkpoint.load(run_checkpoint.latest(run_dir)) if resume else None
    start_version = state.version if state else 0
    if start_version >= config.train.steps:
        raise UsageError(f"{run_dir}: the checkpoint is at step {start_version}; raise train.steps above it to go on")
    run_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        save_config(config, run_dir)
    restores = 0
    while True:
        loop = None
        try:
            loop = TrainingLoop(config, run_dir, inputs, state, restores)
            return loop.run()
        # A learner (or its node) died, in the loop or while the loop was built on a node
        # Ray had not yet noticed was gone: go back to the last checkpoint.
        except ray_exceptions.RayActorError as e:
            restores += 1
            latest = run_checkpoint.latest_or_none(run_dir)
            if latest is None or restores > MAX_RESTORES:
                raise
            print(f"treadle train: an actor died ({type(e).__name__}); going on from {latest}", file=sys.stderr)
            state = run_checkpoint.load(latest)
        finally:
            if loop is not None:
                loop.shutdown()


class TrainingLoop:
    """The actors of one run and the loop over learner steps (see the module doc)."""

    def __init__(self, config: Any, run_dir: Path, inputs: RunInputs, state: LoopCheckpoint | None, restores: int = 0):
        """Start (or join) Ray and the run's actors; a constructor that fails kills those it started."""
        from actors.dashboard_metrics import DashboardMetrics
        from actors.run_log import RunLog

        self.config, self.run_dir, self.inputs = config, run_dir, inputs
        self.version = state.version if state else 0
        self.held_out = inputs.held_out
        self.trained_json = [json_key(k) for k in inputs.trained_keys]  # saved beside every policy
        self.buffer, self.learners, self.pool = None, [], None
        self.log = RunLog(run_dir, resume_version=self.version if state else None, loggers=config.train.loggers)
        try:
            self._start_actors(state, restores)
        except BaseException:
            self.shutdown()
            raise
        self.dashboard = DashboardMetrics(run_dir.name, start=self.log.last_metrics() if state else None)
        self.evaluations = list(state.loop["evaluations"]) if state else []
        loop_state = state.loop if state else {}
        self.clock = _Clock(loop_state.get("elapsed_s", 0.0), loop_state.get("learner_busy_s", 0.0))
        self.tokens_generated = 0
        self.worker_restarts_before = int(loop_state.get("worker_restarts", 0))
        self.restores = restores  # returns to the last checkpoint after a learner died, in this process

    def _start_actors(self, state: LoopCheckpoint | None, restores: int) -> None:
        from actors.actors import BufferActor, LearnerActor, RolloutActor
        from actors.ray_setup import start_ray
        from actors.rollout_pool import RolloutPool

        config, inputs = self.config, self.inputs
        train, rl = config.train, config.rl
        start_ray(train.num_cpus, train.object_store_mb, train.dashboard)
        rollout_kind, learner_kind = placement.actor_kinds(train, rl.device, config.engine.device)
        # A run that goes back to its checkpoint after losing a learner's node waits for the node (or another).
        started_here = not os.environ.get("RAY_ADDRESS")
        _wait_for_room((rollout_kind, learner_kind), started_here, PLACEMENT_WAIT_S if restores else 0.0)
        batch_size = train.batch_groups * rl.group_size
        self.buffer = BufferActor.options(name="treadle-buffer", scheduling_strategy=_this_node()).remote(
            train.max_staleness, batch_size, rl.group_size, rl.dynamic_sampling, rl.dynamic_sampling_max_batches
        )
        # Every learner call goes to every rank (they step, gather and save in lockstep); rank 0 answers.
        self.learners = _start_learners(LearnerActor, inputs.policy, rl, learner_kind, config.model.lora)
        if state is not None:
            ray.get([rank.load_state.remote(str(state.directory)) for rank in self.learners])
            ray.get(self.buffer.load_state.remote(state.buffer, _put_buffered_episodes(state)))
        # Held here for the whole run: a worker Ray restarts gets its problems again with `run`.
        self.problems_ref = ray.put(inputs.train_problems)
        self.trained_keys_ref = ray.put(inputs.trained_keys)
        self.pool = RolloutPool(RolloutActor, rollout_kind, inputs.policy, config, self.run_dir)
        self.weights_ref: tuple[int, Any] | None = None  # (version, reference) of the weights workers are given
        if state is not None:
            self.pool.call("update_weights", self._weights(), self.version)
        self.node_names: dict[str, str] = {}
        self.learner_nodes = [self._node_name(where["node_id"]) for where in ray.get([r.where.remote() for r in self.learners])]

    def run(self) -> dict:
        from actors.report import write_report

        train = self.config.train
        self.progress = Progress(train.steps, self.version)
        if train.eval_every and not self.evaluations:
            self._evaluate()  # before the loop: its time is not the loop's, and no group is generated during it
        self.clock.start()
        self.pool.start(self.buffer, [self.problems_ref])
        last: dict[str, Any] = {}
        with StopRequest() as stop:  # SIGTERM (ray job stop) or SIGINT: end after the step, checkpointed
            try:
                while self.version < train.steps and not stop.requested:
                    last = self._step()
                    if train.eval_every and (self.version % train.eval_every == 0 or self.version == train.steps):
                        last["eval_accuracy"] = self._evaluate()
                    self.log.step(last, last.pop("consumed"))
                    self.dashboard.record(last)
                    if train.checkpoint_every and self.version % train.checkpoint_every == 0 and self.version < train.steps:
                        self._checkpoint()
                    self.progress.step(last)
            finally:
                self.progress.close()
            self.pool.stop()  # groups being generated finish and are buffered: the last checkpoint keeps them
            checkpoint = self._checkpoint()
        paths = {"checkpoint": str(checkpoint), "metrics": str(self.log.metrics_path), "ledger": str(self.log.ledger_path)}
        if self.version < train.steps:  # stopped by a signal: `treadle train --resume` goes on from `checkpoint`
            return {**last, "version": self.version, "evaluations": self.evaluations, "stopped": stop.requested, **paths}
        final = ray.get([rank.save.remote(str(self.run_dir / "final"), self.trained_json) for rank in self.learners])[0]
        (self.run_dir / "eval.json").write_text(json.dumps(self.evaluations, indent=2) + "\n")
        report = write_report(self.run_dir, self.evaluations, train.max_staleness, train.mode)
        return {**last, "evaluations": self.evaluations, "final": final, "report": str(report), **paths}

    def shutdown(self) -> None:
        """Close the logs and free the actor names and CPUs (for another run in this process)."""
        self.log.close()
        if self.pool is not None:
            self.pool.kill()
        for actor in [self.buffer, *self.learners]:
            if actor is not None:
                ray.kill(actor)

    @property
    def worker_restarts(self) -> int:
        return self.worker_restarts_before + self.pool.num_restarts

    def _step(self) -> dict[str, Any]:
        """Wait for a batch, update, publish the weights; the step's metrics (and its ledger
        entries under "consumed")."""
        wait_start = time.perf_counter()
        while (batch := ray.get(self.buffer.take_batch.remote(self.version, BATCH_WAIT_S))) is None:
            self.pool.check(self._weights, self.version)
        step_start = time.perf_counter()
        handles = [entry.handle for entry in batch]
        stats = ray.get([rank.step.remote(handles) for rank in self.learners])[0]
        consumed = [_ledger_entry(entry, self.version) for entry in batch]
        self.version = int(stats["version"])
        weights = self._weights()
        sync_start = time.perf_counter()
        # The workers hold the new weights before the buffer admits groups against the new
        # version: a group admitted at version v is generated by weights >= v (otherwise at
        # eta = 0 every group admitted in between would be stale at birth, and dropped).
        self.pool.call("update_weights", weights, self.version)
        ray.get(self.buffer.set_version.remote(self.version))
        sync_end = time.perf_counter()
        self.clock.add_busy(sync_start - step_start)
        self.pool.check(self._weights, self.version)
        all_stats = self.pool.call("stats")
        worker_stats = [s for s in all_stats if s is not None] or [{"tokens_generated": 0, "idle_ratio": 1.0}]
        buffer_metrics = ray.get(self.buffer.metrics.remote())
        reward_failures: dict[str, int] = {}
        for s in worker_stats:
            for kind, count in s.get("reward_failures", {}).items():
                reward_failures[kind] = reward_failures.get(kind, 0) + count
        tokens_now = sum(s["tokens_generated"] for s in worker_stats)
        generated, self.tokens_generated = max(tokens_now - self.tokens_generated, 0), tokens_now
        return {
            "version": self.version,
            "reward": stats["mean_reward"],
            "accuracy": sum(e.meta.reason == "correct" for e in batch) / len(batch),
            "reasons": dict(Counter(e.meta.reason for e in batch).most_common()),
            **_episode_lengths([e.meta for e in batch]),
            "reward_failures": reward_failures,
            **{k: stats[k] for k in STEP_STATS},
            "learner_wait_s": round(step_start - wait_start, 3),
            "learner_step_s": round(sync_start - step_start, 3),
            "weight_sync_s": round(sync_end - sync_start, 3),
            "elapsed_s": round(self.clock.elapsed(), 2),
            "rollout_tokens_per_s": round(generated / max(sync_end - wait_start, 1e-9), 1),
            "rollout_idle_ratio": round(sum(s["idle_ratio"] for s in worker_stats) / len(worker_stats), 3),
            "learner_idle_ratio": round(self.clock.learner_idle_ratio(), 3),
            "buffer": {k: buffer_metrics[k] for k in ("admitted", "consumed", "dropped", "in_flight", "buffered")},
            "dropped_by_reason": buffer_metrics["dropped_by_reason"],
            "buffered_bytes": buffer_metrics["buffered_bytes"],
            "worker_restarts": self.worker_restarts,
            "restores": self.restores,
            "nodes": {**{f"rollout-{i}": self._node_name(s["node_id"]) if s else None for i, s in enumerate(all_stats)},
                      **{f"learner-{r}": name for r, name in enumerate(self.learner_nodes)}},  # fmt: skip
            "consumed": consumed,
        }

    def _weights(self):
        """A reference to rank 0's weights of the current version (every rank is asked once per
        version: under FSDP2 they gather together)."""
        if self.weights_ref is None or self.weights_ref[0] != self.version:
            self.weights_ref = (self.version, [rank.weights.remote() for rank in self.learners][0])
        return self.weights_ref[1]

    def _node_name(self, node_id: str) -> str:
        """A node's name (`ray start --node-name`; by default its address) and the start of its id."""
        if node_id not in self.node_names:
            self.node_names.update({n["NodeID"]: f"{n['NodeName']}/{n['NodeID'][:6]}" for n in ray.nodes()})
        return self.node_names.get(node_id, node_id[:6])

    def _evaluate(self) -> float:
        result = self.pool.evaluate(self.held_out, self.trained_keys_ref, self._weights, self.version)
        self.evaluations.append({"step": self.version, **result})
        unseen = result.get("accuracy_unseen")
        self.progress.note(
            f"held-out evaluation at step {self.version}: accuracy {result['accuracy']:.3f} on {len(self.held_out)} problems"
            + (f" (unseen {unseen:.3f})" if unseen is not None else "")
            + f", mean tokens {result['mean_total_tokens']:.1f}"
        )
        return result["accuracy"]

    def _checkpoint(self) -> Path:
        """Snapshot the buffer (state and buffered episodes' rows) and the learner into step-N."""
        import pyarrow as pa

        from reasoning.episode_table import THREAD_SCHEMA

        checkpoints = self.run_dir / "checkpoints"
        tmp = run_checkpoint.begin(checkpoints, self.version)
        learner_saved = [rank.save_state.remote(str(tmp), self.trained_json) for rank in self.learners]
        buffer_state, episode_ids, batches = ray.get(self.buffer.checkpoint.remote())
        episodes = pa.Table.from_batches(batches) if batches else THREAD_SCHEMA.empty_table()
        assert ray.get(learner_saved) == [self.version] * len(self.learners)
        loop = {"evaluations": self.evaluations, "elapsed_s": self.clock.elapsed(), "learner_busy_s": self.clock.busy,
                "worker_restarts": self.worker_restarts}  # fmt: skip
        state = LoopCheckpoint(self.version, buffer_state, episode_ids, episodes, loop)
        return run_checkpoint.commit(tmp, checkpoints, state, self.config.train.keep_checkpoints)


PLACEMENT_WAIT_S = 300.0  # how long a run going back to its checkpoint waits for room for its actors
BATCH_WAIT_S = 1.0  # how long one wait for a batch lasts before the driver looks for dead workers
MAX_RESTORES = 3  # returns to the last checkpoint after a dead learner, per `run_training` call

# Learner figures copied into each step's metrics.
STEP_STATS = (
    "loss", "entropy", "clip_fraction", "mismatch_kl", "max_token_staleness", "updates", "token_staleness", "tokens",
    "dual_clip_fraction", "truncated_fraction", "masked_fraction", "overlong_fraction",
)  # fmt: skip


def _episode_lengths(metas: list) -> dict[str, float]:
    """The batch's mean generated tokens per episode, all threads and along the critical
    path (what the parallelization bonus shortens), and their ratio (thread modes' speed-up)."""
    total = sum(m.num_tokens for m in metas)
    critical = sum(m.critical_path_tokens for m in metas)
    lengths = {"episode_tokens": round(total / len(metas), 1)}
    if critical:
        lengths["episode_critical_path_tokens"] = round(critical / len(metas), 1)
        lengths["acceleration_ratio"] = round(total / critical, 3)
    return lengths


def _start_learners(actor_class: Any, checkpoint: str, rl: Any, kind: placement.ActorKind, lora: Any = None) -> list:
    """The learner ranks, placed by `kind`; with more than one they rendezvous on a free port
    of rank 0's node. `lora` (model.lora) makes them train adapters on the frozen `checkpoint`."""
    if kind.count == 1:
        return [actor_class.options(name="treadle-learner", **kind.options()).remote(checkpoint, rl, lora=lora)]
    learners = [
        actor_class.options(name=f"treadle-learner-{rank}", **kind.options()).remote(checkpoint, rl, rank, kind.count, lora=lora)
        for rank in range(kind.count)
    ]  # fmt: skip
    address = ray.get(learners[0].rendezvous_address.remote())
    ray.get([rank.join.remote(address) for rank in learners])
    return learners


def _alive_nodes() -> list[placement.Node]:
    return [placement.Node(n["NodeName"], n["Resources"]) for n in ray.nodes() if n["Alive"]]


def _wait_for_room(kinds: tuple, started_here: bool, timeout_s: float) -> None:
    """A PlacementError (naming the key) unless the cluster can hold the actors, at once or
    once nodes join within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return placement.check_cluster(kinds, _alive_nodes(), started_here)
        except placement.PlacementError as e:
            if time.monotonic() >= deadline:
                raise
            print(f"treadle train: waiting for a node: {e}", file=sys.stderr)
            time.sleep(5.0)


def _this_node():
    """A scheduling strategy that keeps an actor on the driver's node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)


class _Clock:
    """Wall time of the loop (from `start`: the first evaluation is not in it) and the
    learner's busy time, both carried across resumes."""

    def __init__(self, elapsed_before: float, busy_before: float):
        self.elapsed_before = elapsed_before
        self.started = time.perf_counter()
        self.busy = busy_before

    def start(self) -> None:
        """The loop starts now (the time before, e.g. the first evaluation, is not counted)."""
        self.started = time.perf_counter()

    def add_busy(self, seconds: float) -> None:
        self.busy += seconds

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def learner_idle_ratio(self) -> float:
        return max(0.0, 1.0 - self.busy / max(self.elapsed(), 1e-9))


def _ledger_entry(entry: Any, learner_version: int) -> dict[str, Any]:
    meta = entry.meta
    return {
        "episode_id": entry.handle[1], "ticket": entry.ticket.ticket_id, "worker": entry.ticket.worker_id,
        "min_version": meta.min_version, "max_version": meta.max_version, "lag": learner_version - meta.min_version,
        "tokens": meta.num_tokens, "reward": meta.reward,
    }  # fmt: skip


def _put_buffered_episodes(state: LoopCheckpoint) -> dict:
    """Each restored group's rows go back into the object store; handles as the workers make them."""
    handles = {}
    for ticket, (table, ids) in run_checkpoint.group_tables(state).items():
        ref = ray.put(table.combine_chunks().to_batches()[0])
        for index, episode_id in ids.items():
            handles[(ticket, index)] = ([ref], episode_id)
    return handles

