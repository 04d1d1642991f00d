"""The training run's progress in a log: plain short lines, throttled, the last step and every evaluation kept."""
from __future__ import annotations

import io

from actors.progress import Progress


def metrics(version: int) -> dict:
    return {"version": version, "reward": 0.5, "accuracy": 0.25, "rollout_tokens_per_s": 12345.6,
            "max_token_staleness": 1, "elapsed_s": 3.21}  # fmt: skip


def test_a_log_gets_one_short_line_per_interval_and_the_last_step():
    out = io.StringIO()  # not a terminal
    progress = Progress(total=40, initial=0, every_s=3600.0, stream=out)
    for version in range(1, 41):
        progress.step(metrics(version))
        if version == 20:
            progress.note("held-out evaluation at step 20: accuracy 0.900")
    lines = out.getvalue().splitlines()
    assert lines == [
        "step 1/40 | reward 0.500 | batch acc 0.250 | tok/s 12,346 | staleness 1 | 3.2 s",
        "held-out evaluation at step 20: accuracy 0.900",
        "step 40/40 | reward 0.500 | batch acc 0.250 | tok/s 12,346 | staleness 1 | 3.2 s",
    ]
    assert "\r" not in out.getvalue() and max(map(len, lines)) < 300
