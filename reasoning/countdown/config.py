"""Settings of the Countdown task: how problems are drawn and how many of each split."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of, require


@dataclass
class CountdownConfig:
    """APR's Countdown: combine all given numbers with + - * / to reach the target.

    The defaults are APR's setting (`countdown-4`); `configs/countdown-3.yaml` is the
    CPU default.
    """

    numbers: int = field(default=4, metadata=bounds(ge=2, le=6))
    """How many numbers a problem gives; all must be used."""
    max_number: int = field(default=100, metadata=bounds(ge=2, le=10_000))
    """Numbers are drawn uniformly from 1 .. max_number - 1."""
    target_min: int = field(default=10, metadata=bounds(ge=0, le=1_000_000))
    """Smallest target (inclusive)."""
    target_max: int = field(default=100, metadata=bounds(ge=0, le=1_000_000))
    """Largest target (inclusive)."""
    num_train: int = field(default=500_000, metadata=bounds(ge=0, le=10_000_000))
    """Training problems to generate (distinct by sorted numbers + target)."""
    num_val: int = field(default=1_000, metadata=bounds(ge=0, le=1_000_000))
    """Validation problems; never among the training problems."""
    seed: int = field(default=0, metadata=bounds(ge=0, le=2**63 - 1))
    """Seed of the problem generator; the same seed gives the same files."""

    def validate(self) -> None:
        require(
            self.target_min <= self.target_max,
            "target_min",
            f"must be <= target_max ({self.target_min} > {self.target_max})",
        )


@dataclass
class TokenizerConfig:
    """The Countdown tokenizer's vocabulary (see reasoning/countdown/tokenizer.py)."""

    number_digits: int = field(default=3, metadata=bounds(ge=1, le=4))
    """Numbers of up to this many digits are one token each; longer ones are spelled digit
    by digit. 1 spells every number out; 4 makes a vocabulary of over 10,000 tokens."""


@dataclass
class TraceConfig:
    """How `treadle traces` and `treadle sft` write a task's traces: Countdown's search traces
    (reasoning/countdown/traces.py, parallel_traces.py) or wordmath's parallel worked
    solutions (reasoning/wordmath/parallel_traces.py, which read only kind and max_tokens)."""

    kind: str = field(default="sos", metadata=one_of("sos", "apr", "parallel"))
    """sos: one sequential search thread; apr: spawn/join thread trees; parallel: parallel
    blocks whose branches continue the parent's context (Countdown: the search forked at
    promising nodes; wordmath: independent sub-quantities in parallel threads)."""
    sub_calls_min: int = field(default=2, metadata=bounds(ge=1, le=16))
    """APR and parallel: fewest children per spawn (goals per block); each episode draws its
    `Sub Call Budget` uniformly from sub_calls_min .. sub_calls_max, so the model learns
    to follow the budget."""
    sub_calls_max: int = field(default=4, metadata=bounds(ge=1, le=16))
    """APR and parallel: most children per spawn (goals per block)."""
    max_depth: int = field(default=2, metadata=bounds(ge=1, le=4))
    """APR and parallel: how many levels of threads may fork (1 = only the root forks)."""
    beam: int = field(default=0, metadata=bounds(ge=0, le=64))
    """Most steps tried at a node (0 = all): smaller beams give shorter traces that fail more."""
    max_tokens: int = field(default=1024, metadata=bounds(ge=16, le=65_536))
    """Episodes with a thread longer than this (prompt + output) are left out."""
    include_failed: bool = False
    """Keep traces whose search found no solution (they end with `Fail`)."""
    seed: int = field(default=0, metadata=bounds(ge=0, le=2**63 - 1))
    """Seed of the search's tie-breaking and of the sub-call budgets."""

    def validate(self) -> None:
        require(
            self.sub_calls_min <= self.sub_calls_max,
            "sub_calls_min",
            f"must be <= sub_calls_max ({self.sub_calls_min} > {self.sub_calls_max})",
        )
