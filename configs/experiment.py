"""The root of the config tree: one experiment = task, tokenizer, model and its stages.

    config = load_config("configs/countdown-3.yaml", ["task.countdown.num_train=1000"])

The whole tree is built and validated here, before any data, model or Ray is touched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from configs.loading import apply_overrides, read_yaml
from configs.train import TrainConfig
from configs.typed import build, require
from learner.rl_config import RLConfig
from learner.presets import ModelConfig
from learner.sft_config import SFTConfig
from reasoning.controllers.limits import ThreadLimits
from reasoning.countdown.config import TokenizerConfig, TraceConfig
from reasoning.eval.config import EvalConfig
from reasoning.multipath.config import MultiPathConfig
from reasoning.tasks.config import TaskConfig
from rollout.config import EngineConfig

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class ExperimentConfig:
    """One experiment; each YAML file in configs/ fills some of these sections."""

    name: str = "countdown-3"
    """Experiment name (letters, digits, . _ -); runs are written under runs/<name>."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task: its problems, prompts and reward (countdown, math or custom)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """The tokenizer built for a fresh model."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""
    traces: TraceConfig = field(default_factory=TraceConfig)
    """Search traces for the supervised stage."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """The supervised stage."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """The generation engine of evaluation and rollouts."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation (`treadle eval`)."""
    threads: ThreadLimits = field(default_factory=ThreadLimits)
    """Bounds of the parallel-reasoning runtime (apr and parallel modes)."""
    multipath: MultiPathConfig = field(default_factory=MultiPathConfig)
    """k-sample modes of evaluation: vote, short-m@k, prune, confidence."""
    rl: RLConfig = field(default_factory=RLConfig)
    """The RL objective and optimizer of `treadle train`."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The asynchronous loop of `treadle train`."""
    run_dir: str = ""
    """Where this experiment writes; empty means runs/<name>."""

    def validate(self) -> None:
        require(
            NAME_PATTERN.fullmatch(self.name) is not None,
            "name",
            f"must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; got {self.name!r}",
        )


def train_policy(config: ExperimentConfig) -> str:
    """The policy `treadle train` starts from: train.checkpoint, else model.path; "" if neither."""
    return config.train.checkpoint or config.model.path or ""


def run_dir(config: ExperimentConfig) -> Path:
    return Path(config.run_dir or f"runs/{config.name}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment file; raises ConfigError naming each bad key."""
    data = apply_overrides(read_yaml(path), list(overrides or []))
    return build(ExperimentConfig, data)
