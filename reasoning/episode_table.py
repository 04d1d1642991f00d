"""The Arrow schema of episodes: one row per thread sequence.

The same schema carries SFT traces (`treadle traces`), rollout episodes in the buffer and
the Parquet rollout logs, so the learner reads episodes one way everywhere. A row holds
the thread's whole token sequence (prompt then output), how many of those tokens are the
prompt, and a per-token `trainable` flag: prompt tokens and tokens the runtime inserted
(an APR join) are observed, not trained. RL-only columns (logprobs, versions, reward,
finish_reason) are null in SFT traces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.parquet import read_columns

THREAD_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("numbers", pa.list_(pa.int64()), nullable=False),
        pa.field("target", pa.int64(), nullable=False),
        pa.field("thread_id", pa.int32(), nullable=False),
        pa.field("parent_id", pa.int32(), nullable=False),  # -1 for the root thread
        pa.field("depth", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # "root" | "child"
        pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("num_prompt_tokens", pa.int32(), nullable=False),
        pa.field("trainable", pa.list_(pa.bool_()), nullable=False),
        pa.field("logprobs", pa.list_(pa.float32())),  # behaviour logprob per output token
        pa.field("versions", pa.list_(pa.int32())),  # policy version per output token
        pa.field("finish_reason", pa.string()),
        pa.field("reward", pa.float32()),
    ]
)


class EpisodeTableError(ValueError):
    """An episode file that does not have the thread schema; names the file and column."""


def to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in THREAD_SCHEMA.names}
    return pa.table(columns, schema=THREAD_SCHEMA)


def write_threads(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    pq.write_table(to_table(rows), str(path))


def read_threads(path: str | Path) -> pa.Table:
    """Read an episode file, checking that it has the thread schema's columns."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeTableError(f"{path}: no such file")
    table = read_columns(path, THREAD_SCHEMA.names, EpisodeTableError)
    try:
        return table.cast(THREAD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise EpisodeTableError(f"{path}: columns do not have the thread schema's types ({e})") from None
