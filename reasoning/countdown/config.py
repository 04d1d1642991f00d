"""Settings of the Countdown task: how problems are drawn and how many of each split."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, require


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
