"""Bounds on what one episode may do, whatever the model writes."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds


@dataclass
class ThreadLimits:
    """Limits of the parallel-reasoning runtime; a thread that hits one ends with its reason."""

    max_children: int = field(default=8, metadata=bounds(ge=1, le=256))
    """Most children one spawn may start (more: the thread ends with `bad_markup`)."""
    max_depth: int = field(default=2, metadata=bounds(ge=0, le=16))
    """Most levels of forking below the root (deeper spawns end the thread with `too_deep`)."""
    max_threads: int = field(default=64, metadata=bounds(ge=1, le=10_000))
    """Most threads in one episode (`too_many_threads`)."""
    max_thread_tokens: int = field(default=1024, metadata=bounds(ge=1, le=1_000_000))
    """Most tokens one thread may generate (`length`)."""
    max_total_tokens: int = field(default=8192, metadata=bounds(ge=1, le=100_000_000))
    """Most tokens all threads of an episode may generate together (`budget_exhausted`)."""
    max_wall_s: float = field(default=600.0, metadata=bounds(gt=0.0, le=86_400.0))
    """Wall-clock limit of one episode; threads still running then end with `timeout`."""
