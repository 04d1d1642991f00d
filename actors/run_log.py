"""What a training run writes as it goes: step metrics, the consumed-episode ledger, TensorBoard, W&B.

- RUN/train_metrics.jsonl: one JSON object per learner step (the driver's metrics).
- RUN/consumed.jsonl: the audit ledger, one line per step listing every episode the
  step trained on: its id, ticket (group), the versions of its oldest and newest
  token, its lag behind the learner (<= max_staleness, always), tokens and reward.
  Counting the ids across the file shows that no episode was trained twice, also
  across resumes.
These two are always written (the report, resume and the audit read them). `train.loggers`
adds:
- `tensorboard`: RUN/tensorboard, the scalars of `scalars(metrics)` at each step.
- `wandb`: the same scalars to Weights & Biases (the optional extra `treadle[wandb]`),
  run name = the run directory's name, project $WANDB_PROJECT or "treadle", the run's
  config.yaml as its config, local files under $WANDB_DIR or else RUN/wandb. A resumed
  run goes on in the same W&B run (its id is kept in RUN/wandb_run_id); W&B ignores
  steps it has seen, so steps redone after a return to a checkpoint keep their first
  values there. `WANDB_MODE=offline` writes only the local files (`wandb sync` uploads).

On resume from the checkpoint of version N, lines of steps after N (written before the
crash or stop, then undone by the resume) are removed first, so each file reads as one
uninterrupted run. Plain Python; the Prometheus metrics are actors/dashboard_metrics.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

METRICS = "train_metrics.jsonl"
LEDGER = "consumed.jsonl"
TENSORBOARD = "tensorboard"
WANDB_RUN_ID = "wandb_run_id"
SCALARS = (
    "reward", "accuracy", "loss", "entropy", "clip_fraction", "mismatch_kl", "max_token_staleness", "learner_wait_s",
    "learner_step_s", "weight_sync_s", "rollout_tokens_per_s", "rollout_idle_ratio", "learner_idle_ratio",
    "eval_accuracy", "worker_restarts", "episode_tokens", "episode_critical_path_tokens", "acceleration_ratio",
)  # fmt: skip
BUFFER_COUNTS = ("admitted", "consumed", "dropped", "in_flight", "buffered")


def truncate_jsonl(path: Path, last_version: int) -> None:
    """Keep the lines of `path` whose "version" is at most `last_version`."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["version"] <= last_version]
    path.write_text("".join(line + "\n" for line in kept))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of one step's metrics that TensorBoard and W&B plot: train/<figure>,
    buffer/<count> and buffer/dropped_<reason>."""
    out = {f"train/{key}": float(metrics[key]) for key in SCALARS if metrics.get(key) is not None}
    buffer = metrics.get("buffer") or {}
    out.update({f"buffer/{key}": float(buffer[key]) for key in BUFFER_COUNTS if key in buffer})
    out.update({f"buffer/dropped_{reason}": float(n) for reason, n in (metrics.get("dropped_by_reason") or {}).items()})
    return out


class RunLog:
    def __init__(self, run_dir: Path, resume_version: int | None = None, loggers: Iterable[str] = ("jsonl", "tensorboard")):
        loggers = set(loggers)
        assert "jsonl" in loggers and loggers <= {"jsonl", "tensorboard", "wandb"}, loggers  # TrainConfig validates
        self.metrics_path = run_dir / METRICS
        self.ledger_path = run_dir / LEDGER
        if resume_version is not None:
            truncate_jsonl(self.metrics_path, resume_version)
            truncate_jsonl(self.ledger_path, resume_version)
        self.writer = None
        if "tensorboard" in loggers:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=resume_version)
        self.wandb = _start_wandb(run_dir, resume=resume_version is not None) if "wandb" in loggers else None

    def last_metrics(self) -> dict[str, Any] | None:
        """The last step logged (after a resume's truncation): where the run's counts stand."""
        if not self.metrics_path.exists():
            return None
        lines = self.metrics_path.read_text().splitlines()
        return json.loads(lines[-1]) if lines else None

    def step(self, metrics: dict[str, Any], consumed: Iterable[dict[str, Any]]) -> None:
        version = metrics["version"]
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        with self.ledger_path.open("a") as f:
            f.write(json.dumps({"version": version, "episodes": list(consumed)}) + "\n")
        figures = scalars(metrics)
        if self.writer is not None:
            for key, value in figures.items():
                self.writer.add_scalar(key, value, version)
        if self.wandb is not None:
            self.wandb.log(figures, step=version)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _start_wandb(run_dir: Path, resume: bool) -> Any:
    """A W&B run for `run_dir` (the same one again on resume)."""
    import yaml

    from actors.errors import UsageError

    try:
        import wandb
    except ImportError:
        raise UsageError("train.loggers includes wandb, which is not installed: pip install 'treadle[wandb]'") from None
    id_path = run_dir / WANDB_RUN_ID
    run_id = id_path.read_text().strip() if resume and id_path.is_file() else None
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    local_dir = Path(os.environ.get("WANDB_DIR") or run_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "treadle"), name=run_dir.name, id=run_id,
        resume="allow" if run_id else None, config=config, dir=str(local_dir),
    )  # fmt: skip
    id_path.write_text(run.id + "\n")
    return run
