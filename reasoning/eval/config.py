"""Settings of `treadle eval`."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of


@dataclass
class EvalConfig:
    """Which model to evaluate and how long it may think."""

    checkpoint: str = ""
    """Model directory to evaluate; empty means model.path, or else <run_dir>/final.
    (The task is the experiment's `task` section.)"""
    max_new_tokens: int = field(default=512, metadata=bounds(ge=1, le=1_000_000))
    """Most tokens one thread may generate."""
    max_concurrent: int = field(default=256, metadata=bounds(ge=1, le=100_000))
    """Problems in flight at once (the engine batches them)."""
    num_problems: int = field(default=0, metadata=bounds(ge=0, le=10_000_000))
    """Evaluate only the first N problems of the file (0 = all)."""
