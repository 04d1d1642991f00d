"""A small math problem set written by the project, for tests and smoke runs of the `math` task.

Eleven problems, each solved by hand below: five GSM8K-style word problems whose
answers are worked solutions ending in "#### N" (GSM8K's form), and six MATH-style
problems with bare LaTeX answers (a fraction, a root, a multiple of pi, an ordered
pair, an integer). They are not drawn from GSM8K or MATH and say nothing about a
model's benchmark accuracy; they exercise the file readers and the answer verifier.
"""
from __future__ import annotations

from pathlib import Path

from reasoning.math_task import MathProblem, write_math_problems

SAMPLE_PROBLEMS: tuple[MathProblem, ...] = (
    MathProblem(
        "gsm-0",
        "A baker makes 24 muffins in the morning and 18 in the afternoon. "
        "She sells 30 of them. How many muffins does she have left?",
        "She makes 24 + 18 = 42 muffins.\nAfter selling 30 she has 42 - 30 = 12 left.\n#### 12",
    ),
    MathProblem(
        "gsm-1",
        "Tom reads 15 pages a day for 6 days, then 20 pages on the seventh day. "
        "How many pages does he read in the week?",
        "In six days he reads 15 * 6 = 90 pages.\nWith the seventh day: 90 + 20 = 110.\n#### 110",
    ),
    MathProblem(
        "gsm-2",
        "A box holds 8 pencils. A teacher buys 9 boxes and gives 3 pencils to each of "
        "her 22 students. How many pencils are left?",
        "She buys 8 * 9 = 72 pencils and gives away 3 * 22 = 66.\n72 - 66 = 6 are left.\n#### 6",
    ),
    MathProblem(
        "gsm-3",
        "Maria earns $14 an hour and works 35 hours a week. How many dollars does she earn in 4 weeks?",
        "In a week she earns 14 * 35 = 490 dollars.\nIn 4 weeks: 490 * 4 = 1960.\n#### 1960",
    ),
    MathProblem(
        "gsm-4",
        "A train travels at 60 miles per hour for 2.5 hours. How many miles does it travel?",
        "Distance is speed times time: 60 * 2.5 = 150 miles.\n#### 150",
    ),
    MathProblem(
        "math-0",
        "A fair coin is flipped twice. What is the probability of getting exactly one head? "
        "Express your answer as a common fraction.",
        "\\frac{1}{2}",  # HT or TH: 2 of 4 equally likely outcomes
    ),
    MathProblem(
        "math-1",
        "What is the length of a diagonal of a square with side length 1?",
        "\\sqrt{2}",  # sqrt(1^2 + 1^2)
    ),
    MathProblem(
        "math-2",
        "What is the circumference of a circle with radius $\\frac{3}{2}$? Express your answer in terms of $\\pi$.",
        "3\\pi",  # 2 * pi * 3/2
    ),
    MathProblem(
        "math-3",
        "The lines $y = x + 1$ and $y = 3 - x$ meet at one point. "
        "Give that point as an ordered pair $(x, y)$.",
        "(1, 2)",  # x + 1 = 3 - x gives x = 1, then y = 2
    ),
    MathProblem(
        "math-4",
        "Compute $\\dbinom{6}{2}$.",
        "15",  # 6 * 5 / 2
    ),
    MathProblem(
        "math-5",
        "Solve for $x$: $2x - 7 = 0$.",
        "\\frac{7}{2}",
    ),
)


def write_sample_problems(path: str | Path) -> list[MathProblem]:
    """Write SAMPLE_PROBLEMS to `path` (`.jsonl` or `.parquet`) and return them."""
    write_math_problems(path, SAMPLE_PROBLEMS)
    return list(SAMPLE_PROBLEMS)
