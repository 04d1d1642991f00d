"""The training driver: builds the actors from the config and runs the asynchronous loop.

    rollout workers --(Arrow batches, ray.put)--> BufferActor --(whole fresh groups)--> LearnerActor
          ^                                                                              |
          +-------------------- weights (numpy dict, ray.put), version += 1 -------------+

Rollout workers generate continuously; the buffer admits new groups only within the
capacity the staleness bound allows and never hands the learner a group with a token more
than `train.max_staleness` versions old. After each step the driver publishes the new
weights to every worker (they land between decode steps) and tells the buffer the new
version. Every generated episode is appended to a Parquet rollout log under
RUN/rollouts/<worker>/ (actors/rollout_log.py; the episode table's schema). Each step is logged (actors/run_log.py:
train_metrics.jsonl, the consumed-episode ledger, TensorBoard) and sets the `treadle_*`
metrics of the Ray dashboard (actors/dashboard_metrics.py); every `train.eval_every`
steps (and after the last) a rollout worker evaluates held-out problems greedily with
the weights it holds. The loop is checkpointed every `train.checkpoint_every` steps and
after the last (actors/run_checkpoint.py); `resume` goes on from such a checkpoint with
the buffered episodes it holds. The final policy is saved to RUN/final.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from actors import run_checkpoint
from actors.errors import UsageError
from actors.run_checkpoint import LoopCheckpoint

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
    import ray
    from tqdm import tqdm

    from actors.actors import BufferActor, LearnerActor, RolloutActor
    from actors.dashboard_metrics import DashboardMetrics
    from actors.ray_setup import start_ray
    from actors.run_log import RunLog
    from reasoning.countdown.problems import generate_problems

    train, rl = config.train, config.rl
    state = run_checkpoint.load(run_checkpoint.latest(run_dir)) if resume else None
    start_version = state.version if state else 0
    if start_version >= train.steps:
        raise UsageError(f"{run_dir}: the checkpoint is at step {start_version}; raise train.steps above it to go on")
    run_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        save_config(config, run_dir)
    train_problems, val_problems = generate_problems(config.task)
    held_out = val_problems[: train.eval_problems]
    log = RunLog(run_dir, resume_version=start_version if state else None)
    start_ray(train.num_cpus, train.object_store_mb, train.dashboard)
    batch_size = train.batch_groups * rl.group_size
    buffer = BufferActor.options(name="treadle-buffer").remote(train.max_staleness, batch_size, rl.group_size)
    learners = _start_learners(LearnerActor, train.checkpoint, rl, train.num_learners)
    # Every call goes to every rank (they step, gather and save in lockstep); rank 0 answers.
    if state is not None:
        ray.get([rank.load_state.remote(str(state.directory)) for rank in learners])
        ray.get(buffer.load_state.remote(state.buffer, _put_buffered_episodes(state)))
    workers = [
        RolloutActor.options(name=f"treadle-rollout-{i}").remote(
            f"rollout-{i}", train.checkpoint, train_problems, config,
            str(run_dir.resolve() / "rollouts" / f"rollout-{i}"),
        )
        for i in range(train.num_rollout_workers)
    ]  # fmt: skip
    if state is not None:
        weights = [rank.weights.remote() for rank in learners][0]
        ray.get([w.update_weights.remote(weights, start_version) for w in workers])
    loops = [w.run.remote(buffer) for w in workers]
    dashboard = DashboardMetrics()
    evaluations = list(state.loop["evaluations"]) if state else []
    if train.eval_every and not evaluations:
        evaluations.append({"step": 0, **ray.get(workers[0].evaluate.remote(held_out))})
    clock = _Clock(state.loop.get("elapsed_s", 0.0) if state else 0.0, state.loop.get("learner_busy_s", 0.0) if state else 0.0)
    version, last = start_version, {}
    tokens_before = 0
    with tqdm(total=train.steps, initial=start_version, unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        while version < train.steps:
            wait_start = time.perf_counter()
            while (batch := ray.get(buffer.take_batch.remote(version))) is None:
                time.sleep(0.05)
            step_start = time.perf_counter()
            handles = [entry.handle for entry in batch]
            stats = ray.get([rank.step.remote(handles) for rank in learners])[0]
            consumed = [_ledger_entry(entry, version) for entry in batch]
            version = int(stats["version"])
            weights = [rank.weights.remote() for rank in learners][0]  # rank 0's; workers read it zero-copy
            sync_start = time.perf_counter()
            ray.get([w.update_weights.remote(weights, version) for w in workers] + [buffer.set_version.remote(version)])
            sync_end = time.perf_counter()
            clock.add_busy(sync_start - step_start)
            worker_stats = ray.get([w.stats.remote() for w in workers])
            buffer_metrics = ray.get(buffer.metrics.remote())
            tokens_now = sum(s["tokens_generated"] for s in worker_stats)
            last = {
                "version": version,
                "reward": stats["mean_reward"],
                "accuracy": sum(e.meta.reward == 1.0 for e in batch) / len(batch),
                **{k: stats[k] for k in ("loss", "entropy", "clip_fraction", "mismatch_kl", "max_token_staleness", "updates")},
                "token_staleness": stats["token_staleness"],
                "tokens": stats["tokens"],
                "learner_wait_s": round(step_start - wait_start, 3),
                "learner_step_s": round(sync_start - step_start, 3),
                "weight_sync_s": round(sync_end - sync_start, 3),
                "elapsed_s": round(clock.elapsed(), 2),
                "rollout_tokens_per_s": round(max(tokens_now - tokens_before, 0) / max(sync_end - wait_start, 1e-9), 1),
                "rollout_idle_ratio": round(sum(s["idle_ratio"] for s in worker_stats) / len(worker_stats), 3),
                "learner_idle_ratio": round(clock.learner_idle_ratio(), 3),
                "buffer": {k: buffer_metrics[k] for k in ("admitted", "consumed", "dropped", "in_flight", "buffered")},
                "dropped_by_reason": buffer_metrics["dropped_by_reason"],
            }
            tokens_before = tokens_now
            if train.eval_every and (version % train.eval_every == 0 or version == train.steps):
                evaluations.append({"step": version, **ray.get(workers[0].evaluate.remote(held_out))})
                last["eval_accuracy"] = evaluations[-1]["accuracy"]
            log.step(last, consumed)
            dashboard.record(last)
            if train.checkpoint_every and version % train.checkpoint_every == 0 and version < train.steps:
                _checkpoint(run_dir, version, buffer, learners, evaluations, clock, train.keep_checkpoints)
            bar.set_postfix(reward=f"{last['reward']:.3f}", staleness=last["max_token_staleness"],
                            tok_s=f"{last['rollout_tokens_per_s']:.0f}")  # fmt: skip
            bar.update(1)
    for worker in workers:
        worker.stop.remote()
    ray.get(loops)  # groups being generated finish and are buffered: the last checkpoint keeps them
    checkpoint = _checkpoint(run_dir, version, buffer, learners, evaluations, clock, train.keep_checkpoints)
    final = ray.get([rank.save.remote(str(run_dir / "final")) for rank in learners])[0]
    log.close()
    for actor in [*workers, buffer, *learners]:  # free the names and CPUs for another run in this process
        ray.kill(actor)
    (run_dir / "eval.json").write_text(json.dumps(evaluations, indent=2) + "\n")
    return {**last, "evaluations": evaluations, "final": final, "checkpoint": str(checkpoint),
            "metrics": str(log.metrics_path), "ledger": str(log.ledger_path)}  # fmt: skip


def _start_learners(actor_class: Any, checkpoint: str, rl: Any, num_learners: int) -> list:
    """The learner ranks; with more than one they rendezvous on a free port of 127.0.0.1."""
    import socket

    import ray

    if num_learners == 1:
        return [actor_class.options(name="treadle-learner").remote(checkpoint, rl)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    learners = [
        actor_class.options(name=f"treadle-learner-{rank}").remote(checkpoint, rl, rank, num_learners, address)
        for rank in range(num_learners)
    ]
    ray.get([rank.ready.remote() for rank in learners])
    return learners


class _Clock:
    """Wall time of the loop and the learner's busy time, carried across resumes."""

    def __init__(self, elapsed_before: float, busy_before: float):
        self.start = time.perf_counter() - elapsed_before
        self.busy = busy_before

    def add_busy(self, seconds: float) -> None:
        self.busy += seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def learner_idle_ratio(self) -> float:
        return max(0.0, 1.0 - self.busy / max(self.elapsed(), 1e-9))


def _ledger_entry(entry: Any, learner_version: int) -> dict[str, Any]:
    meta = entry.meta
    return {
        "episode_id": entry.handle[1], "ticket": entry.ticket.ticket_id, "min_version": meta.min_version,
        "max_version": meta.max_version, "lag": learner_version - meta.min_version, "tokens": meta.num_tokens,
        "reward": meta.reward,
    }  # fmt: skip


def _checkpoint(run_dir: Path, version: int, buffer, learners: list, evaluations: list, clock: _Clock, keep: int) -> Path:
    """Snapshot the buffer (state and buffered episodes' rows) and the learner into step-N."""
    import pyarrow as pa
    import ray

    checkpoints = run_dir / "checkpoints"
    tmp = run_checkpoint.begin(checkpoints, version)
    learner_saved = [rank.save_state.remote(str(tmp)) for rank in learners]
    buffer_state, handles = ray.get(buffer.checkpoint.remote())
    refs = {id_list[0].hex(): id_list[0] for id_list, _ in handles.values()}
    episodes = pa.Table.from_batches(ray.get(list(refs.values()))) if refs else None
    if episodes is None:
        from reasoning.episode_table import THREAD_SCHEMA

        episodes = THREAD_SCHEMA.empty_table()
    assert ray.get(learner_saved) == [version] * len(learners)
    loop = {"evaluations": evaluations, "elapsed_s": clock.elapsed(), "learner_busy_s": clock.busy}
    episode_ids = {key: episode_id for key, (_, episode_id) in handles.items()}
    return run_checkpoint.commit(tmp, checkpoints, LoopCheckpoint(version, buffer_state, episode_ids, episodes, loop), keep)


def _put_buffered_episodes(state: LoopCheckpoint) -> dict:
    """Each restored group's rows go back into the object store; handles as the workers make them."""
    import ray

    handles = {}
    for ticket, (table, ids) in run_checkpoint.group_tables(state).items():
        ref = ray.put(table.combine_chunks().to_batches()[0])
        for index, episode_id in ids.items():
            handles[(ticket, index)] = ([ref], episode_id)
    return handles

