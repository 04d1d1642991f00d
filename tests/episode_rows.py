"""A version-2 episode-table row for tests that build episodes by hand (one root thread by default)."""
from __future__ import annotations

from typing import Any


def thread_row(episode_id: str, group_id: str = "p#0", **fields: Any) -> dict[str, Any]:
    """A trained root thread of 1 prompt and 2 output tokens; `fields` override any column."""
    row = {
        "episode_id": episode_id, "group_id": group_id, "task": "countdown", "problem_id": group_id.split("#")[0],
        "problem": "{}", "thread_id": 0, "parent_id": -1, "spawn_index": -1, "depth": 0, "role": "root",
        "token_ids": [5, 6, 7], "num_prompt_tokens": 1, "trainable": [False, True, True], "logprobs": [-0.1, -0.2],
        "versions": [0, 0], "finish_reason": "stop", "reward": 1.0, "reason": "correct",
        "episode_total_tokens": None, "episode_critical_path_tokens": None,
    }  # fmt: skip
    row.update(fields)
    return row
