"""Writes examples/custom-train.jsonl (32 rows) and examples/custom-eval.jsonl (8 rows): small
word problems with a `prompt` and an `answer` column, the shipped data of
configs/custom-rl.yaml. Seeded: `python examples/make_custom_data.py` writes the same files.
"""
import json
import random
from pathlib import Path

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay"]
THINGS = ["apples", "pens", "books", "cards"]


def rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        name, thing = rng.choice(NAMES), rng.choice(THINGS)
        if i % 2:
            prompt, answer = f"{name} has {a} {thing} and buys {b} more. How many {thing} does {name} have now?", a + b
        else:
            prompt, answer = f"{name} has {a + b} {thing} and gives away {b}. How many {thing} are left?", a
        out.append({"id": f"w{i}", "prompt": prompt + " End with the number.", "answer": answer})
    return out


if __name__ == "__main__":
    here = Path(__file__).parent
    data = rows(40)
    for name, part in (("custom-train.jsonl", data[:32]), ("custom-eval.jsonl", data[32:])):
        (here / name).write_text("".join(json.dumps(r) + "\n" for r in part))
