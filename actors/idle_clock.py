"""Idle-time accounting for a worker that is either busy or waiting (plain Python).

The rollout worker marks itself busy while any group is being generated and idle while
it waits for the buffer to admit one; `ratio()` is the idle share of the time since the
clock started, the "rollout idle ratio" of the dashboard. The clock is injectable so
tests run without sleeping.
"""
from __future__ import annotations

import time
from typing import Callable


class IdleClock:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._start = self._since = clock()
        self._busy = False
        self._idle_seconds = 0.0

    def set_busy(self, busy: bool) -> None:
        now = self._clock()
        if not self._busy:
            self._idle_seconds += now - self._since
        self._since = now
        self._busy = busy

    def idle_seconds(self) -> float:
        return self._idle_seconds + (0.0 if self._busy else self._clock() - self._since)

    def ratio(self) -> float:
        elapsed = self._clock() - self._start
        return self.idle_seconds() / elapsed if elapsed > 0 else 0.0
