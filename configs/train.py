"""Settings of the asynchronous RL loop (`treadle train`)."""
from __future__ import annotations

import re
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
    shares a GPU: with the default one worker and one learner fit on one GPU; above 1,
    whole GPUs). Ray makes the GPU it gives device 0 of the worker's process."""
    learner_gpus: float = field(default=0.5, metadata=bounds(ge=0.0, le=64.0))
    """GPUs Ray reserves for each learner when rl.device is cuda (NCCL needs a whole GPU
    per rank: use 1 with several learners)."""
    rollout_resources: list[str] = field(default_factory=list)
    """Custom Ray resources each rollout worker asks for, as NAME=AMOUNT (e.g.
    [rollout=1]): it runs only on nodes started with them (`ray start --resources
    '{"rollout": 4}'`), and a worker Ray restarts after losing its node comes back on any
    node that has them. Empty: any node with a free CPU."""
    learner_resources: list[str] = field(default_factory=list)
    """Custom Ray resources each learner asks for, as NAME=AMOUNT (e.g. [learner=1]);
    empty: any node with a free CPU (and the GPU share above)."""
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
        for key in ("rollout_resources", "learner_resources"):
            parse_resources(getattr(self, key), key)
        for key in ("rollout_gpus", "learner_gpus"):
            gpus = getattr(self, key)
            require(gpus <= 1 or gpus.is_integer(), key,
                    f"Ray gives an actor a fraction of one GPU or whole GPUs; got {gpus}")  # fmt: skip

    def resources(self, kind: Literal["rollout", "learner"]) -> dict[str, float]:
        """train.rollout_resources or train.learner_resources as Ray's {name: amount}."""
        key = f"{kind}_resources"
        return parse_resources(getattr(self, key), key)


# Resources Ray sets itself: CPUs and GPUs have their own keys, memory is the node's.
RAY_OWN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def parse_resources(items: list[str], key: str) -> dict[str, float]:
    """["rollout=1", "big_memory=0.5"] -> {"rollout": 1.0, "big_memory": 0.5}; a FieldError naming `key` otherwise."""
    resources: dict[str, float] = {}
    for item in items:
        name, sep, amount = item.partition("=")
        name, amount = name.strip(), amount.strip()
        require(bool(sep), key, f"expected NAME=AMOUNT items (e.g. [rollout=1]); got {item!r}")
        require(RESOURCE_NAME.fullmatch(name) is not None, key,
                f"{name!r} is not a resource name (letters, digits, '_', '.', '-'; first a letter or '_')")  # fmt: skip
        require(name not in RAY_OWN_RESOURCES, key,
                f"{name} is Ray's own resource; CPUs are one per actor and GPUs are train.rollout_gpus / "
                f"train.learner_gpus")  # fmt: skip
        require(name not in resources, key, f"names {name} twice")
        try:
            value = float(amount)
        except ValueError:
            value = float("nan")
        require(0 < value <= 1e6, key, f"{name}: the amount must be a number in (0, 1e6]; got {amount!r}")
        require(round(value, 4) == value, key, f"{name}: Ray counts resources in steps of 0.0001; got {amount}")
        resources[name] = value
    return resources
