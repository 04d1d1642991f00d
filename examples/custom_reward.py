"""An example reward function for the `custom` task: the last number in the output, exact.

Use it for a task whose rows have an `answer` column, with the working directory at the
repository root (or this folder's parent on PYTHONPATH):

    task.reward: "examples.custom_reward:reward"

treadle calls `reward(row, output)` in a worker process, bounded in time; it may return
a float or (float, reason). See reward/custom_reward.py for what happens when it fails.
"""

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def reward(row: dict, output: str) -> tuple[float, str]:
    """(1.0, "exact") if the output's last number equals row["answer"], else (0.0, why)."""
    numbers = _NUMBER.findall(output[-1000:])  # the answer comes last; bound the scan
    if not numbers:
        return 0.0, "wrong: no number in the output"
    if float(numbers[-1]) == float(row["answer"]):
        return 1.0, "exact"
    return 0.0, f"wrong: {numbers[-1]} is not {row['answer']}"
