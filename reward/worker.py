"""A helper process that answers requests in bounded time, killed and replaced when it does not.

Verifiers that run code which may hang use it: math-verify's sympy (reward.math_answer)
and a user's reward function (reward.custom_reward). Neither can be bounded inside the
calling process: signal.alarm works only in a main thread and cannot interrupt a long C
call, and a thread cannot be killed. So the code runs in a fresh interpreter, and the
parent waits at most `timeout_s` for each reply; on expiry it kills the worker and starts
a fresh one (its start-up is not counted against any request's time).

The worker is `python -c` rather than multiprocessing's spawn: spawn re-runs the caller's
__main__ in the child (a script without a main guard fails, a Ray worker re-imports ray).
It talks to the parent over one end of a socket pair, with `multiprocessing.Connection`.

Child side: `handler` ("module:function") is called once with the string `args` (imports
and setup) and returns a function `request -> reply`; the child reports ready and then
answers requests until its socket closes. Before each request the kernel is told to end
the child after `cpu_cap_s` more CPU time, and a watchdog thread ends it when the parent
dies, so a worker orphaned while stuck (its parent killed) does not live on, whether it
burns CPU or sleeps. An optional address-space limit (RLIMIT_AS) covers memory.

Not covered: a pool of workers (requests from several threads are serialised), Windows.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 120.0
"""Default wall time for a worker to run its handler's setup (imports) before it is an error."""

_REAP_TIMEOUT_S = 0.5
_WATCHDOG_PERIOD_S = 1.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from reward.worker import _boot; _boot(sys.argv[2:])"


class WorkerStartError(RuntimeError):
    """The worker process could not start (an environment fault, not a model output)."""


@dataclass(frozen=True)
class Reply:
    """What came of one request: status "ok" (value: the handler's reply), "timeout"
    (value: None; the worker was replaced) or "crash" (value: its exit code; replaced)."""

    status: str
    value: Any = None


class BoundedWorker:
    """One reusable worker process serving `handler`; calls from several threads are serialised.

    Start-up is asynchronous (the constructor launches the worker, the first `ask` waits
    for it). `num_restarts` counts workers replaced after a timeout or crash. Use as a
    context manager or call `close()`.
    """

    def __init__(
        self,
        handler: str,
        args: Sequence[str] = (),
        *,
        name: str,
        memory_limit_bytes: int | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.args = tuple(args)
        self.name = name
        self.memory_limit_bytes = memory_limit_bytes
        self.startup_timeout_s = startup_timeout_s
        self.num_restarts = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._closed = False
        self._start_worker()

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (changes when it is replaced)."""
        return None if self._process is None else self._process.pid

    def ask(self, request: Any, timeout_s: float, cpu_cap_s: float) -> Reply:
        """Send `request` (picklable) and wait at most `timeout_s` for the reply.

        Raises RuntimeError once closed and WorkerStartError if a worker cannot start;
        a request that hangs or kills the worker is a Reply, never an exception.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} worker is closed")
            if self._process is None or self._process.poll() is not None:
                self._restart()  # died between calls (killed from outside): not this request's fault
            self._wait_ready()
            assert self._conn is not None and self._process is not None
            try:
                self._conn.send((cpu_cap_s, request))
                if not self._conn.poll(timeout_s):
                    self._restart(busy=True)
                    return Reply("timeout")
                return Reply("ok", self._conn.recv())
            except (EOFError, BrokenPipeError, ConnectionResetError):
                dead = self._process
                self._restart(busy=True)  # reaps `dead` (a no-op kill if it already exited)
                return Reply("crash", dead.returncode)

    def close(self) -> None:
        """Stop the worker; idempotent. Later `ask` calls raise RuntimeError."""
        with self._lock:
            self._closed = True
            self._stop_worker()

    def __enter__(self) -> BoundedWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start_worker(self) -> None:
        parent_conn, child_conn = multiprocessing.Pipe(duplex=True)
        fd = child_conn.fileno()
        limit = "" if self.memory_limit_bytes is None else str(self.memory_limit_bytes)
        argv = [str(fd), str(os.getpid()), limit, self.handler, *self.args]
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _PACKAGE_ROOT, *argv],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        child_conn.close()  # so a dead worker shows up here as EOFError
        self._conn, self._ready = parent_conn, False

    def _wait_ready(self) -> None:
        if self._ready:
            return
        assert self._conn is not None and self._process is not None
        try:
            message = self._conn.recv() if self._conn.poll(self.startup_timeout_s) else None
        except EOFError:
            message = None
        if message == "ready":
            self._ready = True
            return
        self._stop_worker()
        if isinstance(message, tuple) and message[0] == "failed":
            raise WorkerStartError(f"{self.name} worker failed to start: {message[1]}")
        raise WorkerStartError(
            f"{self.name} worker did not report ready within {self.startup_timeout_s} s "
            "(its traceback, if any, is on stderr)"
        )

    def _restart(self, busy: bool = False) -> None:
        self._stop_worker(busy)
        self.num_restarts += 1
        self._start_worker()

    def _stop_worker(self, busy: bool = False) -> None:
        """End the worker: SIGKILL if `busy` (stuck) or still starting, else EOF."""
        busy = busy or not self._ready
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        if conn is not None:
            conn.close()  # an idle worker sees EOF and exits
        if process is None:
            return
        if not busy:
            try:
                process.wait(timeout=_REAP_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                pass  # not idle after all
        process.kill()  # nothing in the worker needs cleaning up
        process.wait()


def _boot(argv: list[str]) -> None:
    """Worker main: set up `handler`, then answer (cpu_cap_s, request) messages on socket `fd`."""
    import resource  # POSIX only, like the rest of treadle's process handling

    fd, parent_pid, memory_limit, handler, *args = argv
    conn = Connection(int(fd))
    # Ctrl-C in a terminal reaches the whole process group: die at once, even inside a C call.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threading.Thread(target=_exit_with_parent, args=(int(parent_pid),), daemon=True).start()
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (int(memory_limit), int(memory_limit)))
    try:
        module, function = handler.split(":")
        answer: Callable[[Any], Any] = getattr(importlib.import_module(module), function)(*args)
    except Exception as e:  # reported to the parent, which raises WorkerStartError with it
        traceback.print_exc()
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send("ready")
    while True:
        try:
            cpu_cap_s, request = conn.recv()
        except EOFError:
            return
        _cap_cpu_time(resource, cpu_cap_s)
        conn.send(answer(request))


def _exit_with_parent(parent_pid: int) -> None:
    """End this process once its parent is gone (reparented), even if the main thread sleeps."""
    while os.getppid() == parent_pid:
        time.sleep(_WATCHDOG_PERIOD_S)
    os._exit(1)


def _cap_cpu_time(resource, seconds: float) -> None:
    """Let the kernel end this process (SIGXCPU) after `seconds` more CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
