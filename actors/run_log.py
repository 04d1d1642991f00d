"""What a training run writes as it goes: step metrics, the consumed-episode ledger, TensorBoard.

- RUN/train_metrics.jsonl: one JSON object per learner step (the driver's metrics).
- RUN/consumed.jsonl: the audit ledger, one line per step listing every episode the
  step trained on: its id, ticket (group), the versions of its oldest and newest
  token, its lag behind the learner (<= max_staleness, always), tokens and reward.
  Counting the ids across the file shows that no episode was trained twice, also
  across resumes.
- RUN/tensorboard: scalars of every numeric metric.

On resume from the checkpoint of version N, lines of steps after N (written before the
crash or stop, then undone by the resume) are removed first, so each file reads as one
uninterrupted run. Plain Python; the dashboard gauges are actors/dashboard_metrics.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

METRICS = "train_metrics.jsonl"
LEDGER = "consumed.jsonl"
TENSORBOARD = "tensorboard"
SCALARS = (
    "reward", "accuracy", "loss", "entropy", "clip_fraction", "mismatch_kl", "max_token_staleness", "learner_wait_s",
    "learner_step_s", "weight_sync_s", "rollout_tokens_per_s", "rollout_idle_ratio", "learner_idle_ratio",
    "eval_accuracy",
)  # fmt: skip


def truncate_jsonl(path: Path, last_version: int) -> None:
    """Keep the lines of `path` whose "version" is at most `last_version`."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["version"] <= last_version]
    path.write_text("".join(line + "\n" for line in kept))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


class RunLog:
    def __init__(self, run_dir: Path, resume_version: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.metrics_path = run_dir / METRICS
        self.ledger_path = run_dir / LEDGER
        if resume_version is not None:
            truncate_jsonl(self.metrics_path, resume_version)
            truncate_jsonl(self.ledger_path, resume_version)
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=resume_version)

    def step(self, metrics: dict[str, Any], consumed: Iterable[dict[str, Any]]) -> None:
        version = metrics["version"]
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        with self.ledger_path.open("a") as f:
            f.write(json.dumps({"version": version, "episodes": list(consumed)}) + "\n")
        for key in SCALARS:
            if metrics.get(key) is not None:
                self.writer.add_scalar(f"train/{key}", metrics[key], version)

    def close(self) -> None:
        self.writer.close()
