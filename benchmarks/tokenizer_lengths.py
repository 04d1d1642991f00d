"""Sequence lengths under each `number_digits` setting of the Countdown tokenizer.

    python -m benchmarks.tokenizer_lengths [--problems 300]

For 3- and 4-number problems (the countdown-3 and countdown-4 settings) it tokenizes
(a) the prompt plus a solution in `<answer>` form and (b) a depth-first search log that
writes every explored step as `a op b=c` followed by the numbers left, the shape of the
search traces of the SFT stage, and prints mean token counts per setting with the
vocabulary size. The last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import statistics

from reasoning.countdown.config import CountdownConfig
from reasoning.countdown.problems import generate_problems
from reasoning.countdown.solver import combine, solve
from reasoning.countdown.tokenizer import build_tokenizer

SETTINGS = {
    "countdown-3": CountdownConfig(numbers=3, max_number=30, target_min=10, target_max=50),
    "countdown-4": CountdownConfig(),
}
MAX_LOG_LINES = 400


def search_log(numbers: tuple[int, ...], target: int) -> str:
    """A depth-first search written one explored step a line, stopping at the first solution."""
    lines: list[str] = []

    def dfs(state: tuple[int, ...]) -> bool:
        if len(state) == 1:
            return state[0] == target
        for i in range(len(state)):
            for j in range(i + 1, len(state)):
                rest = state[:i] + state[i + 1 : j] + state[j + 1 :]
                a, b = max(state[i], state[j]), min(state[i], state[j])
                for value, op in combine(a, b):
                    if len(lines) >= MAX_LOG_LINES:
                        return False
                    left = rest + (value,)
                    lines.append(f"{a}{op}{b}={value}|{' '.join(map(str, left))}")
                    if dfs(left):
                        return True
        return False

    dfs(numbers)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=300)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    for setting, config in SETTINGS.items():
        config.num_train, config.num_val, config.seed = args.problems, 0, 7
        problems, _ = generate_problems(config)
        answers = [
            f"{p.target}|{' '.join(map(str, p.numbers))}\n<answer>{solve(p.numbers, p.target)}</answer>"
            for p in problems
        ]
        logs = [search_log(p.numbers, p.target) for p in problems]
        for digits in (1, 2, 3):
            tokenizer = build_tokenizer(digits)
            for kind, texts in (("answer", answers), ("search", logs)):
                mean = statistics.mean(len(tokenizer.encode(t)) for t in texts)
                figures[f"{setting}_{kind}_tokens_digits{digits}"] = round(mean, 1)
                print(f"{setting:12s} {kind:7s} number_digits={digits}: {mean:7.1f} tokens")
            figures[f"vocab_size_digits{digits}"] = len(tokenizer)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
