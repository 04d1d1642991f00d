"""Settings of the `wordmath` task: which word problems are drawn, how many, and its tokenizer."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, require

FRAMES = ("total", "share", "left", "compare", "times")
"""How a problem combines its parts (reasoning/wordmath/templates.py)."""
MOST_STEPS = 9
"""Three parts of two steps each, two additions and a frame's step."""


@dataclass
class WordMathConfig:
    """Synthetic GSM8K-style word problems (reasoning/wordmath/).

    The defaults are the CPU setting of `configs/wordmath.yaml`: small multipliers and
    results below 500, so that a model of a few million parameters can learn the
    arithmetic. `treadle data wordmath` prints how many distinct problems a setting has.
    """

    min_steps: int = field(default=2, metadata=bounds(ge=1, le=MOST_STEPS))
    """Fewest arithmetic steps (binary operations) a solution takes."""
    max_steps: int = field(default=4, metadata=bounds(ge=1, le=MOST_STEPS))
    """Most arithmetic steps a solution takes."""
    min_parts: int = field(default=1, metadata=bounds(ge=1, le=3))
    """Fewest sub-quantities a problem combines."""
    max_parts: int = field(default=3, metadata=bounds(ge=1, le=3))
    """Most sub-quantities (one per person) a problem combines at the end; parts that take
    steps of their own are independent of each other (the structure's `branches`)."""
    min_part_steps: int = field(default=0, metadata=bounds(ge=0, le=2))
    """Fewest steps every part takes: 0 lets a part be a given number ("Ana has 12
    marbles."); 2 makes every part a two-step computation, so that the parts of a problem
    are long independent branches (the parallel-block setting, configs/wordmath-parts.yaml)."""
    frames: list[str] = field(default_factory=lambda: list(FRAMES))
    """Which ways of combining the parts are drawn: total (add them up), share (add, then
    divide equally), left (add, then take away), compare (how many more), times (a
    multiple of one part)."""
    max_factor: int = field(default=9, metadata=bounds(ge=2, le=100))
    """Multipliers and divisors (boxes, days, packs, people sharing) are 2 .. max_factor."""
    max_quantity: int = field(default=50, metadata=bounds(ge=3, le=1000))
    """Other given numbers (items, prices, amounts taken away) are 2 .. max_quantity;
    budgets go up to max_value."""
    max_value: int = field(default=500, metadata=bounds(ge=10, le=100_000))
    """Every intermediate result and every answer is 1 .. max_value."""
    num_train: int = field(default=20_000, metadata=bounds(ge=0, le=10_000_000))
    """Training problems to generate (distinct by key: template and numbers)."""
    num_val: int = field(default=500, metadata=bounds(ge=0, le=1_000_000))
    """Validation problems; no training problem has the key of one."""
    seed: int = field(default=0, metadata=bounds(ge=0, le=2**63 - 1))
    """Seed of the problem generator; the same settings and seed give the same files."""
    vocab_size: int = field(default=640, metadata=bounds(ge=300, le=65_536))
    """Size of the byte-level BPE vocabulary trained for a fresh model (before the chat and
    thread-markup tokens are added); chosen by `python -m benchmarks.wordmath_tokenizer`."""
    tokenizer_problems: int = field(default=2_000, metadata=bounds(ge=10, le=1_000_000))
    """Generated problems (question, solution, chat answer) whose text the BPE is trained on."""

    def validate(self) -> None:
        steps = f"({self.min_steps} > {self.max_steps})"
        require(self.min_steps <= self.max_steps, "min_steps", f"must be <= max_steps {steps}")
        parts = f"({self.min_parts} > {self.max_parts})"
        require(self.min_parts <= self.max_parts, "min_parts", f"must be <= max_parts {parts}")
        unknown = ", ".join(repr(f) for f in self.frames if f not in FRAMES)
        require(not unknown, "frames", f"unknown frame(s) {unknown}; choose from {', '.join(FRAMES)}")
        require(bool(self.frames), "frames", f"at least one of {', '.join(FRAMES)}")
        require(
            self.max_quantity <= self.max_value and self.max_factor <= self.max_value, "max_value",
            f"must be >= max_quantity and max_factor ({self.max_value} < {max(self.max_quantity, self.max_factor)})",
        )  # fmt: skip
