"""A stop asked of the training loop by a signal: finish the step, checkpoint, exit.

`ray job stop` sends the job's driver SIGTERM (and SIGKILL some seconds later:
RAY_JOB_STOP_WAIT_TIME_S); a terminal sends SIGINT. Either one, the first time, only
records the request: the loop ends after the step in progress and checkpoints, so
`treadle train --resume` goes on without losing a step. The second time the handler
that was there before runs (Ray's own, or the default that ends the process), so a
stuck run can still be stopped at once. The checkpoint is written to a temporary
directory and renamed when complete (actors/run_checkpoint.py), so a SIGKILL during it
leaves the previous checkpoint whole.

Plain Python: handlers are installed only from the main thread (Python's rule) and for
signals the process does not ignore (a background job's SIGINT), and restored on exit.
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager: `requested` names the first signal received inside it ("" if none)."""

    def __init__(self, message: Callable[[str], None] | None = None):
        self.requested = ""
        self._message = message or (lambda text: print(text, file=sys.stderr, flush=True))
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                if signal.getsignal(number) is not signal.SIG_IGN:  # a signal the process ignores stays ignored
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.requested:  # the second signal: do what the process did before
            previous = self._previous.get(number, signal.SIG_DFL)
            self._restore()
            if callable(previous):
                previous(number, frame)
            else:
                signal.raise_signal(number)  # SIG_DFL ends the process; SIG_IGN does nothing
            return
        self.requested = name
        self._message(f"{name}: stopping after this step and checkpointing; send it again to stop at once")
