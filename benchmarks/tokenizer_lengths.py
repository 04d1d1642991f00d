"""Sequence lengths under each `number_digits` setting of the Countdown tokenizer.

    python -m benchmarks.tokenizer_lengths [--problems 300]

For 3- and 4-number problems (the countdown-3 and countdown-4 settings) it tokenizes
(a) the prompt plus a solution in `<answer>` expression form and (b) the SoS+ search
trace that SFT trains on (prompt + output), and prints mean token counts per setting
with the vocabulary size. The last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics

from reasoning.countdown.config import CountdownConfig
from reasoning.countdown.problems import generate_problems
from reasoning.countdown.solver import solve
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.countdown.traces import sos_trace

SETTINGS = {
    "countdown-3": CountdownConfig(numbers=3, max_number=30, target_min=10, target_max=50),
    "countdown-4": CountdownConfig(),
}


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
        traces = []
        for p in problems:
            thread = sos_trace(p, random.Random(p.id)).threads[0]
            traces.append(thread.prompt + thread.output)
        for digits in (1, 2, 3):
            tokenizer = build_tokenizer(digits)
            for kind, texts in (("answer", answers), ("sos_trace", traces)):
                mean = statistics.mean(len(tokenizer.encode(t)) for t in texts)
                figures[f"{setting}_{kind}_tokens_digits{digits}"] = round(mean, 1)
                print(f"{setting:12s} {kind:9s} number_digits={digits}: {mean:7.1f} tokens")
            figures[f"vocab_size_digits{digits}"] = len(tokenizer)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
