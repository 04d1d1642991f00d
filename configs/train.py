"""Settings of the asynchronous RL loop (`treadle train`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from configs.typed import bounds, one_of, require


@dataclass
class TrainConfig:
    """The loop: who generates, how stale data may be, how many learner steps."""

    checkpoint: str = ""
    """The policy to start from (a Hugging Face model directory with its tokenizer);
    empty: model.path."""
    mode: str = field(default="apr", metadata=one_of("sequential", "apr", "parallel"))
    """How rollout workers reason: one thread, APR spawn/join thread trees, or parallel
    blocks whose threads continue the parent's prefix."""
    steps: int = field(default=20, metadata=bounds(ge=1, le=10_000_000))
    """Learner steps (each bumps the policy version by one)."""
    batch_groups: int = field(default=8, metadata=bounds(ge=1, le=100_000))
    """Groups (of rl.group_size episodes each) per learner step."""
    max_staleness: int = field(default=2, metadata=bounds(ge=0, le=1000))
    """eta: no trained token is more than this many versions older than the learner;
    0 is synchronous training through the same code."""
    num_rollout_workers: int = field(default=1, metadata=bounds(ge=1, le=1024))
    """Rollout worker actors (each one engine, num_cpus=1)."""
    num_learners: int = field(default=1, metadata=bounds(ge=1, le=1024))
    """Data-parallel learner actors (num_cpus=1 each; gloo on CPU, NCCL on GPU): each trains
    a token-balanced share of every batch and they make the update one learner would."""
    groups_in_flight: int = field(default=4, metadata=bounds(ge=1, le=1024))
    """Groups one worker generates at once (its engine batches all their threads)."""
    temperature: float = field(default=1.0, metadata=bounds(gt=0.0, le=10.0))
    """Rollout sampling temperature."""
    max_new_tokens: int = field(default=512, metadata=bounds(ge=1, le=1_000_000))
    """Most tokens one thread may generate in a rollout."""
    eval_every: int = field(default=10, metadata=bounds(ge=0, le=10_000_000))
    """Evaluate held-out problems every this many steps, and after the last (0 = never)."""
    eval_problems: int = field(default=200, metadata=bounds(ge=1, le=1_000_000))
    """How many validation problems (never trained on) each evaluation uses, greedily."""
    checkpoint_every: int = field(default=10, metadata=bounds(ge=0, le=10_000_000))
    """Checkpoint the whole loop (RUN/checkpoints/step-N) every this many steps, and always
    after the last; `treadle train --resume RUN` goes on from the newest (0 = last only)."""
    keep_checkpoints: int = field(default=2, metadata=bounds(ge=1, le=1000))
    """How many of the newest loop checkpoints to keep."""
    rollout_gpus: float = field(default=0.5, metadata=bounds(ge=0.0, le=64.0))
    """GPUs Ray reserves for each rollout worker when engine.device is cuda (a fraction
    shares a GPU: with the default one worker and one learner fit on one GPU)."""
    learner_gpus: float = field(default=0.5, metadata=bounds(ge=0.0, le=64.0))
    """GPUs Ray reserves for each learner when rl.device is cuda (NCCL needs a whole GPU
    per rank: use 1 with several learners)."""
    num_cpus: int = field(default=2, metadata=bounds(ge=1, le=4096))
    """CPUs of the local Ray started when RAY_ADDRESS is unset."""
    object_store_mb: int = field(default=512, metadata=bounds(ge=80, le=10_000_000))
    """Object store size of that local Ray."""
    dashboard: bool = True
    """Start the Ray dashboard (on 127.0.0.1) with the local Ray."""
    loggers: list[Literal["jsonl", "tensorboard", "wandb"]] = field(default_factory=lambda: ["jsonl", "tensorboard"])
    """Where step metrics go (actors/run_log.py): jsonl (RUN/train_metrics.jsonl, always on:
    the report and resume read it), tensorboard (RUN/tensorboard), wandb (Weights & Biases,
    the optional extra treadle[wandb]; WANDB_MODE=offline keeps it on this machine)."""

    def validate(self) -> None:
        require("jsonl" in self.loggers, "loggers", f"must include jsonl (always on); got {self.loggers}")
        require(len(set(self.loggers)) == len(self.loggers), "loggers", f"names a logger twice: {self.loggers}")
