"""The Arrow schema of episodes, version 2: one row per thread sequence, task-neutral.

The same schema carries SFT data (`treadle traces`, generic SFT data sets), rollout
episodes in the buffer and the Parquet rollout logs, so the learner reads episodes one
way everywhere. A row holds the thread's whole token sequence (prompt then output), how
many of those tokens are the prompt, and a per-token `trainable` flag: prompt tokens and
tokens the runtime inserted (a join) are observed, not trained. Columns:

- identity: `episode_id`; `group_id` (the learner normalises advantages over the
  episodes of one group: the k samples of one problem in one ticket); `task` (its
  name); `problem_id`; `problem` (the task's problem as a JSON object);
- the thread tree: `thread_id`, `parent_id` (-1 for a root), `spawn_index` (which
  fork of its parent started it; -1 for a root), `depth`, `role` (root | child);
- tokens: `token_ids`, `num_prompt_tokens`, `trainable`, and the RL-only per-output-token
  `logprobs` and `versions` (null in SFT data);
- the episode's outcome, repeated on each of its rows: `finish_reason` (the thread's),
  `reward` and `reason` (null in SFT data), `episode_total_tokens` and
  `episode_critical_path_tokens`.

The version is written into the schema's metadata. Files of version 1 (Countdown-only:
`numbers` and `target` columns, groups by `problem_id`) are read and converted: the
problem becomes its JSON, `group_id` is the old `problem_id` (which held the ticket),
and the columns version 1 did not record (`spawn_index` of children, `reason`, the
critical path) are null.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.parquet import read_columns

VERSION = 2
VERSION_KEY = b"treadle.episode_table.version"

THREAD_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),  # JSON object
        pa.field("thread_id", pa.int32(), nullable=False),
        pa.field("parent_id", pa.int32(), nullable=False),  # -1 for a root thread
        pa.field("spawn_index", pa.int32()),  # -1 for a root; null in converted version-1 files
        pa.field("depth", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # "root" | "child"
        pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("num_prompt_tokens", pa.int32(), nullable=False),
        pa.field("trainable", pa.list_(pa.bool_()), nullable=False),
        pa.field("logprobs", pa.list_(pa.float32())),  # behaviour logprob per output token
        pa.field("versions", pa.list_(pa.int32())),  # policy version per output token
        pa.field("finish_reason", pa.string()),
        pa.field("reward", pa.float32()),
        pa.field("reason", pa.string()),  # the verdict's reason
        pa.field("episode_total_tokens", pa.int32()),
        pa.field("episode_critical_path_tokens", pa.int32()),
    ],
    metadata={VERSION_KEY: str(VERSION).encode()},
)

V1_COLUMNS = (
    "episode_id", "problem_id", "numbers", "target", "thread_id", "parent_id", "depth", "role", "token_ids",
    "num_prompt_tokens", "trainable", "logprobs", "versions", "finish_reason", "reward",
)  # fmt: skip


class EpisodeTableError(ValueError):
    """An episode file that does not have the thread schema; names the file, the version and column."""


def to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in THREAD_SCHEMA.names}
    return pa.table(columns, schema=THREAD_SCHEMA)


def write_threads(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    pq.write_table(to_table(rows), str(path))


def read_threads(path: str | Path) -> pa.Table:
    """Read an episode file of version 2 (or 1, converted), checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeTableError(f"{path}: no such file")
    try:
        schema = pq.read_schema(str(path))
    except (pa.ArrowInvalid, OSError) as e:
        raise EpisodeTableError(f"{path}: not a readable Parquet file ({e})") from None
    # Files written by other tools may lack the metadata: version 2 has a group_id column.
    unmarked = str(VERSION) if "group_id" in schema.names else "1"
    version = (schema.metadata or {}).get(VERSION_KEY, unmarked.encode()).decode()
    if version == "1":
        return _from_version_1(path, read_columns(path, V1_COLUMNS, _version_error(path, 1)))
    if version != str(VERSION):
        raise EpisodeTableError(f"{path}: episode table version {version}; this treadle reads versions 1 and {VERSION}")
    table = read_columns(path, THREAD_SCHEMA.names, _version_error(path, VERSION))
    try:
        return table.cast(THREAD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise EpisodeTableError(f"{path}: columns do not have the version-2 thread schema's types ({e})") from None


def _version_error(path: Path, version: int) -> type[EpisodeTableError]:
    class VersionedError(EpisodeTableError):
        def __init__(self, message: str):
            super().__init__(f"{message} (episode table version {version})")

    return VersionedError


def _from_version_1(path: Path, table: pa.Table) -> pa.Table:
    """Version-1 rows (Countdown only) in the version-2 schema."""
    try:
        old = table.to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise EpisodeTableError(f"{path}: unreadable version-1 episode table ({e})") from None
    totals: dict[str, int] = {}
    for row in old:
        generated = sum(row["trainable"] or []) if row["logprobs"] is not None else None
        if generated is not None:
            totals[row["episode_id"]] = totals.get(row["episode_id"], 0) + generated
    rows = [
        {
            **{k: row[k] for k in V1_COLUMNS if k not in ("numbers", "target")},
            "group_id": row["problem_id"],
            "task": "countdown",
            "problem": json.dumps(
                {"id": row["problem_id"].split("#")[0], "numbers": row["numbers"], "target": row["target"]}, sort_keys=True
            ),
            "spawn_index": -1 if row["parent_id"] < 0 else None,
            "reason": None,
            "episode_total_tokens": totals.get(row["episode_id"]),
            "episode_critical_path_tokens": None,
        }
        for row in old
    ]
    try:
        return to_table(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise EpisodeTableError(f"{path}: version-1 rows do not convert to version 2 ({e})") from None
