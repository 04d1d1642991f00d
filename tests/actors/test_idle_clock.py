"""The idle clock on a hand-driven clock: idle until busy, busy time not counted."""
from __future__ import annotations

import pytest

from actors.idle_clock import IdleClock


def test_idle_ratio_counts_only_waiting_time():
    now = [0.0]
    clock = IdleClock(lambda: now[0])
    now[0] = 2.0  # idle 0..2
    clock.set_busy(True)
    now[0] = 8.0  # busy 2..8
    clock.set_busy(True)  # still busy (a second group started): nothing changes
    now[0] = 9.0
    clock.set_busy(False)
    now[0] = 10.0  # idle 9..10 and still idle
    assert clock.idle_seconds() == pytest.approx(3.0)
    assert clock.ratio() == pytest.approx(0.3)


def test_a_fresh_clock_is_all_idle():
    now = [5.0]
    clock = IdleClock(lambda: now[0])
    assert clock.ratio() == 0.0
    now[0] = 6.0
    assert clock.ratio() == pytest.approx(1.0)
