"""One factory from a mode name to a controller: `await controller.run(problem, episode_id) -> Episode`.

Thread modes (`sequential`, `apr`, `parallel`) serve eval and RL; the multi-path modes
(`vote`, `short-m@k`, `prune`, `confidence`) sample `multipath.k` sequential paths of one
problem and serve eval. Every controller takes the task (prompt and score), and the
task checks the tokenizer before the first episode (a chat prompt needs a template; a
thread protocol checks that each of its tags is one token).
"""
from __future__ import annotations

from typing import Any, Protocol

from reasoning.controllers.limits import ThreadLimits
from reasoning.episode import Episode
from reasoning.multipath.config import MultiPathConfig
from reasoning.tasks.base import Task
from rollout.engine import Engine, SamplingParams

THREAD_MODES = ("sequential", "apr", "parallel")
"""Modes of `treadle train` (train.mode) and `treadle eval`."""
MULTIPATH_MODES = ("vote", "short-m@k", "prune", "confidence")
"""Modes of `treadle eval` only."""
MODES = THREAD_MODES + MULTIPATH_MODES


class Controller(Protocol):
    mode: str

    async def run(self, problem: Any, episode_id: str | None = None) -> Episode: ...


def make_controller(
    mode: str,
    engine: Engine,
    tokenizer: Any,
    task: Task,
    sampling: SamplingParams,
    limits: ThreadLimits | None = None,
    multipath: MultiPathConfig | None = None,
    check_task: bool = True,
) -> Controller:
    """The controller of `mode`; raises ValueError for an unknown mode and the task's
    TaskError (or the protocol's ThreadTokenError) when the tokenizer cannot serve it.
    `check_task=False` skips the task's check (a caller that builds a controller per
    episode has made it once: for a custom task it imports the reward function)."""
    if check_task:
        task.check(tokenizer)
    limits = limits or ThreadLimits()
    if mode == "sequential":
        from reasoning.controllers.sequential import SequentialController

        return SequentialController(engine, tokenizer, task, sampling)
    if mode == "apr":
        from reasoning.controllers.apr import AprController

        return AprController(engine, tokenizer, task, sampling, limits)
    if mode == "parallel":
        from reasoning.controllers.parallel import ParallelController

        return ParallelController(engine, tokenizer, task, sampling, limits)
    if mode in MULTIPATH_MODES:
        from reasoning.multipath.runner import MultiPathRunner

        runner = MultiPathRunner(engine, tokenizer, task, multipath or MultiPathConfig(), sampling.max_tokens)
        return MultiPathController(runner, mode)
    raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")


class MultiPathController:
    """A multi-path mode as a controller (reasoning/multipath/runner.py does the work)."""

    def __init__(self, runner: Any, mode: str):
        self.runner = runner
        self.mode = mode

    async def run(self, problem: Any, episode_id: str | None = None) -> Episode:
        return await self.runner.run(problem, self.mode, episode_id)

    def pass_at_k(self, episode: Episode) -> bool:
        return self.runner.pass_at_k(episode)
