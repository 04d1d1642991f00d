"""The training driver: builds the actors from the config and runs the asynchronous loop.

    rollout workers --(Arrow batches, ray.put)--> BufferActor --(whole fresh groups)--> LearnerActor
          ^                                                                              |
          +-------------------- weights (numpy dict, ray.put), version += 1 -------------+

Rollout workers generate continuously; the buffer admits new groups only within the
capacity the staleness bound allows and never hands the learner a group with a token more
than `train.max_staleness` versions old. After each step the driver publishes the new
weights to every worker (they land between decode steps) and tells the buffer the new
version. Every generated episode is appended to RUN/rollouts/<worker>.parquet (the
episode table's schema). Each step appends one line to RUN/train_metrics.jsonl, writes TensorBoard
scalars to RUN/tensorboard and sets the `treadle_*` gauges of the Ray dashboard
(actors/dashboard_metrics.py); every `train.eval_every` steps (and after the last) a rollout
worker evaluates held-out problems greedily with the weights it holds. The final policy
is saved to RUN/final.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def run_training(config: Any, run_dir: Path) -> dict:
    import ray
    from tqdm import tqdm

    from actors.actors import BufferActor, LearnerActor, RolloutActor
    from actors.dashboard_metrics import DashboardMetrics
    from actors.ray_setup import start_ray
    from torch.utils.tensorboard import SummaryWriter

    from reasoning.countdown.problems import generate_problems

    train, rl = config.train, config.rl
    run_dir.mkdir(parents=True, exist_ok=True)
    train_problems, val_problems = generate_problems(config.task)
    held_out = val_problems[: train.eval_problems]
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    start_ray(train.num_cpus, train.object_store_mb, train.dashboard)
    batch_size = train.batch_groups * rl.group_size
    buffer = BufferActor.options(name="treadle-buffer").remote(train.max_staleness, batch_size, rl.group_size)
    learner = LearnerActor.options(name="treadle-learner").remote(train.checkpoint, rl)
    workers = [
        RolloutActor.options(name=f"treadle-rollout-{i}").remote(
            f"rollout-{i}", train.checkpoint, train_problems, config, str(run_dir.resolve() / "rollouts" / f"rollout-{i}.parquet")
        )
        for i in range(train.num_rollout_workers)
    ]
    loops = [w.run.remote(buffer) for w in workers]
    dashboard = DashboardMetrics()
    metrics_path = run_dir / "train_metrics.jsonl"
    version, last = 0, {}
    evaluations = [{"step": 0, **ray.get(workers[0].evaluate.remote(held_out))}] if train.eval_every else []
    start = time.perf_counter()
    with tqdm(total=train.steps, unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        for _ in range(train.steps):
            wait_start = time.perf_counter()
            while (batch := ray.get(buffer.take_batch.remote(version))) is None:
                time.sleep(0.05)
            waited = time.perf_counter() - wait_start
            step_start = time.perf_counter()
            stats = ray.get(learner.step.remote([entry.handle for entry in batch]))
            version = int(stats["version"])
            weights = learner.weights.remote()  # a reference: workers read the arrays zero-copy
            sync_start = time.perf_counter()
            ray.get([w.update_weights.remote(weights, version) for w in workers] + [buffer.set_version.remote(version)])
            buffer_metrics = ray.get(buffer.metrics.remote())
            last = {
                "version": version,
                "reward": stats["mean_reward"],
                "accuracy": sum(e.meta.reward == 1.0 for e in batch) / len(batch),
                "loss": stats["loss"],
                "mismatch_kl": stats["mismatch_kl"],
                "max_token_staleness": stats["max_token_staleness"],
                "tokens": stats["tokens"],
                "learner_wait_s": round(waited, 3),
                "learner_step_s": round(sync_start - step_start, 3),
                "weight_sync_s": round(time.perf_counter() - sync_start, 3),
                "elapsed_s": round(time.perf_counter() - start, 2),
                "rollout_tokens_per_s": round(stats["tokens"] / max(time.perf_counter() - wait_start, 1e-9), 1),
                "buffer": {k: buffer_metrics[k] for k in ("admitted", "consumed", "dropped", "in_flight", "buffered")},
                "dropped_by_reason": buffer_metrics["dropped_by_reason"],
            }
            if train.eval_every and (version % train.eval_every == 0 or version == train.steps):
                evaluations.append({"step": version, **ray.get(workers[0].evaluate.remote(held_out))})
                last["eval_accuracy"] = evaluations[-1]["accuracy"]
            with metrics_path.open("a") as f:
                f.write(json.dumps(last) + "\n")
            dashboard.record(last)
            for key in ("reward", "accuracy", "loss", "mismatch_kl", "max_token_staleness", "learner_wait_s", "learner_step_s", "weight_sync_s", "eval_accuracy"):
                if key in last:
                    writer.add_scalar(f"train/{key}", last[key], version)
            bar.set_postfix(reward=f"{last['reward']:.3f}", staleness=last["max_token_staleness"],
                            tok_s=f"{last['rollout_tokens_per_s']:.0f}")  # fmt: skip
            bar.update(1)
    for worker in workers:
        worker.stop.remote()
    ray.get(loops)
    final = ray.get(learner.save.remote(str(run_dir / "final")))
    writer.close()
    (run_dir / "eval.json").write_text(json.dumps(evaluations, indent=2) + "\n")
    return {**last, "evaluations": evaluations, "final": final, "metrics": str(metrics_path)}
