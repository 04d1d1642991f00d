"""What a training run prints while it runs, readable in a terminal and in a job log.

On a terminal, a tqdm bar redrawn in place. Anywhere else (a `ray job submit` log, a file,
CI), one plain line per step at most every `every_s` seconds and for the last step:

    step 12/150 | reward 0.906 | batch acc 0.875 | tok/s 5,395 | staleness 2 | 14.2 s

plus one line for each held-out evaluation as it finishes (`note`). A `\\r`-redrawn bar in
a log is one line of thousands of characters; these stay under 200.
`quiet_libraries` silences the progress bars of transformers and the Hugging Face hub
("Loading weights", "Writing model shards") in the process that calls it.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


def quiet_libraries() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = os.environ.get("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # transformers is a dependency; this only keeps the helper import-safe
        pass


def step_line(metrics: dict[str, Any], total: int) -> str:
    """One step's plain progress line (see the module doc)."""
    return (
        f"step {metrics['version']}/{total} | reward {metrics['reward']:.3f} | batch acc {metrics['accuracy']:.3f} | "
        f"tok/s {metrics['rollout_tokens_per_s']:,.0f} | staleness {metrics['max_token_staleness']} | "
        f"{metrics['elapsed_s']:.1f} s"
    )


class Progress:
    def __init__(self, total: int, initial: int, every_s: float = 10.0, stream: TextIO | None = None):
        self.total = total
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.last_print = float("-inf")
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", file=self.stream, dynamic_ncols=True)

    def step(self, metrics: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(reward=f"{metrics['reward']:.3f}", staleness=metrics["max_token_staleness"],
                                 tok_s=f"{metrics['rollout_tokens_per_s']:.0f}")  # fmt: skip
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last_print >= self.every_s or metrics["version"] >= self.total:
            self.last_print = now
            print(step_line(metrics, self.total), file=self.stream, flush=True)

    def note(self, line: str) -> None:
        """A line that must not be lost in the bar (e.g. an evaluation's result)."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
