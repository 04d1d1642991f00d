"""A user's reward function, named by import path and run bounded in time.

A researcher writes `def reward(row: dict, output: str)` returning a float, or a tuple
(float, reason: str), and names it "package.module:function" (the `custom` task's
`reward`). `CustomReward.score(row, output)` is total: whatever the function does it
returns a Verdict and never raises, so a rollout worker scoring with it lives on.

- A finite number r (int or float; a bool is not a number here) is CORRECT when
  r >= `correct_at`, else SCORED; either way the reward is r (partial and negative
  rewards pass through) and the function's reason, if any, is the detail.
- Raising, returning NaN or infinity, returning a non-number (a str, None, a bool) or a
  malformed tuple is REWARD_ERROR with reward 0.0 and a detail saying which
  ("raised ValueError: ...", "returned nan", "returned str").
- Running past `timeout_s` is TIMEOUT with reward 0.0: the function runs in a worker
  process (reward.worker), which is killed and replaced, so even `time.sleep(1e9)` or a
  C loop holding the GIL is bounded. A worker dying mid-call (os._exit, a segfault) is
  REWARD_ERROR. An output over MAX_OUTPUT_CHARS is TOO_LONG without a call.

Each failure is counted by kind in `CustomReward.failures` (a Counter). The worker
imports the function by path with the caller's sys.path and working directory in front,
so a module of the project that `treadle train` runs from is found; its print() output
goes to stderr. Rows are JSON-able values (they are pickled to the worker).

Not covered: async reward functions, batched scoring, and running several calls at once
(calls from several threads are serialised on the one worker).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import numbers
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from reward.verdict import Reason, Verdict, clip_detail
from reward.worker import BoundedWorker

DEFAULT_TIMEOUT_S = 5.0
"""Wall time allowed for one call of the user's function."""
MAX_OUTPUT_CHARS = 1 << 20
"""Longer outputs are TOO_LONG without a call (far more than any rollout generates)."""
_CPU_SLACK_S = 2.0
# The worker's CPU-time cap only ends a worker orphaned while stuck (reward.worker). A
# user's function may use several threads (numpy), so allow every core for the timeout.
_NUM_CORES = os.cpu_count() or 1


def parse_reward_spec(spec: str) -> tuple[str, str]:
    """("package.module", "function") from "package.module:function"; ValueError naming `spec`."""
    form = "'package.module:function'"
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"reward function {spec!r} is not of the form {form}")
    module, function = spec.split(":")
    if not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"reward function {spec!r}: {module!r} is not a dotted module name ({form})")
    if not function.isidentifier():
        raise ValueError(f"reward function {spec!r}: {function!r} is not a function name ({form})")
    return module, function


def check_reward_function(spec: str) -> None:
    """Import the function named by `spec` here and check it is callable.

    For config validation, so that a bad path fails before anything starts: ValueError
    naming `spec` and the import error. The function itself is not called.
    """
    with _search_path_in_front():
        _import_function(spec)


def _import_function(spec: str) -> Callable[..., Any]:
    module_name, name = parse_reward_spec(spec)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any error in a user's module is a config error naming it
        error = f"{type(e).__name__}: {e}"
        raise ValueError(f"reward function {spec!r}: cannot import {module_name!r}: {error}") from e
    if not hasattr(module, name):
        raise ValueError(f"reward function {spec!r}: module {module_name!r} has no attribute {name!r}")
    function = getattr(module, name)
    if not callable(function):
        raise ValueError(f"reward function {spec!r} is a {type(function).__name__}, not callable")
    return function


def _search_path() -> list[str]:
    """The caller's sys.path, with the working directory in front unless on it ('' is it)."""
    if "" in sys.path or os.getcwd() in sys.path:
        return list(sys.path)
    return [os.getcwd(), *sys.path]


@contextlib.contextmanager
def _search_path_in_front() -> Iterator[None]:
    missing = [p for p in _search_path() if p not in sys.path]
    sys.path[:0] = missing
    try:
        yield
    finally:
        for path in missing:
            sys.path.remove(path)


class CustomReward:
    """Scores outputs with the user's function `spec` in one reusable worker process.

    Thread-safe (calls are serialised). Start-up is asynchronous: the constructor checks
    the spec's form and launches the worker, which imports the function; the first
    `score` waits for it and raises reward.worker.WorkerStartError if the import fails
    there (an environment fault: call `check_reward_function` first to fail early).
    Use as a context manager or call `close()`.
    """

    def __init__(
        self,
        spec: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        correct_at: float = 1.0,
        memory_limit_bytes: int | None = None,
    ) -> None:
        parse_reward_spec(spec)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if not math.isfinite(correct_at):
            raise ValueError(f"correct_at must be a finite number, got {correct_at!r}")
        self.spec = spec
        self.timeout_s = timeout_s
        self.correct_at = correct_at
        # Zero-reward outcomes by kind: raised, non_finite, non_number, bad_tuple, timeout,
        # crash (the worker died mid-call), too_long.
        self.failures: Counter[str] = Counter()
        self._failures_lock = threading.Lock()
        self._worker = BoundedWorker(
            "reward.custom_reward:_reward_handler",
            (spec, json.dumps(_search_path())),
            name=f"reward function {spec!r}",
            memory_limit_bytes=memory_limit_bytes,
        )

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (changes when it is replaced)."""
        return self._worker.worker_pid

    @property
    def num_restarts(self) -> int:
        """Workers replaced after a timeout or crash."""
        return self._worker.num_restarts

    def score(self, row: dict, output: str) -> Verdict:
        """The reward of `output` for problem `row`, by the user's function; never raises
        for anything the function or the output does."""
        if len(output) > MAX_OUTPUT_CHARS:
            detail = f"output has {len(output)} characters, limit {MAX_OUTPUT_CHARS}"
            return self._fail("too_long", Reason.TOO_LONG, detail)
        cpu_cap_s = self.timeout_s * _NUM_CORES + _CPU_SLACK_S
        reply = self._worker.ask((row, output), self.timeout_s, cpu_cap_s)
        if reply.status == "timeout":
            return self._fail("timeout", Reason.TIMEOUT, f"took over {self.timeout_s} s; worker restarted")
        if reply.status == "crash":
            return self._fail("crash", Reason.REWARD_ERROR, f"worker died (exit code {reply.value}); restarted")
        status, *value = reply.value
        if status == "error":
            kind, detail = value
            return self._fail(kind, Reason.REWARD_ERROR, detail)
        reward, reason = value
        verdict_reason = Reason.CORRECT if reward >= self.correct_at else Reason.SCORED
        return Verdict(reward=reward, reason=verdict_reason, detail=clip_detail(reason))

    def close(self) -> None:
        """Stop the worker; idempotent. Later `score` calls raise RuntimeError."""
        self._worker.close()

    def __enter__(self) -> CustomReward:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fail(self, kind: str, reason: Reason, detail: str) -> Verdict:
        with self._failures_lock:
            self.failures[kind] += 1
        return Verdict.fail(reason, detail)


# --- the worker's side ---------------------------------------------------------------


def _reward_handler(spec: str, search_path: str) -> Callable[[tuple[dict, str]], tuple]:
    """Worker setup (reward.worker): import `spec` with the caller's path; answer (row, output).

    Replies are plain data, checked here so that no user object is pickled back:
    ("ok", reward, reason) or ("error", kind, detail).
    """
    sys.path[:0] = json.loads(search_path)
    os.dup2(2, 1)  # print() in a reward function goes to stderr, not nowhere
    function = _import_function(spec)

    def answer(request: tuple[dict, str]) -> tuple:
        row, output = request
        try:
            result = function(row, output)
        except (Exception, SystemExit) as e:
            return "error", "raised", clip_detail(f"raised {type(e).__name__}: {e}")
        return _check_result(result)

    return answer


def _check_result(result: object) -> tuple:
    reason = ""
    if isinstance(result, tuple):
        if len(result) != 2:
            return "error", "bad_tuple", f"returned a tuple of {len(result)} items, not (reward, str)"
        result, reason = result
        if not isinstance(reason, str):
            return "error", "bad_tuple", f"returned a reason of type {type(reason).__name__}, not str"
        if not _is_number(result):
            return "error", "bad_tuple", f"returned a reward of type {type(result).__name__} in its tuple"
    if not _is_number(result):
        return "error", "non_number", f"returned {type(result).__name__}"
    try:
        reward = float(result)
    except OverflowError:
        return "error", "non_finite", f"returned {type(result).__name__} beyond float range"
    if not math.isfinite(reward):
        return "error", "non_finite", f"returned {reward}"
    return "ok", reward, clip_detail(reason)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
