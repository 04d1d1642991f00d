"""A rollout worker's Parquet log: every generated group, trained or not, readable after a crash.

A Parquet file is only readable once its footer is written, so the log is a directory of
closed parts, RUN/rollouts/<worker>/part-NNNNNN.parquet, each holding the groups the
worker finished between two weight updates. The open part is written as
`part-NNNNNN.parquet.tmp` and renamed when `rotate()` (called on each weight update) or
`close()` closes it; a killed worker loses only its open part, which holds episodes of
the current version. Part numbers continue after the highest part already in the
directory, so a resumed run appends instead of overwriting. Plain pyarrow.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.episode_table import THREAD_SCHEMA

SUFFIX = ".parquet"


class RolloutLog:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        parts = [int(p.name[5:11]) for p in self.directory.glob(f"part-*{SUFFIX}") if p.name[5:11].isdigit()]
        self._next_part = max(parts, default=-1) + 1
        self._writer: pq.ParquetWriter | None = None
        self._open_path: Path | None = None

    def append(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._open_path = self.directory / f"part-{self._next_part:06d}{SUFFIX}"
            self._next_part += 1
            self._writer = pq.ParquetWriter(str(self._open_path) + ".tmp", THREAD_SCHEMA)
        self._writer.write_batch(batch)

    def rotate(self) -> Path | None:
        """Close the open part (if any) under its final name; returns that path."""
        if self._writer is None:
            return None
        self._writer.close()
        os.replace(str(self._open_path) + ".tmp", self._open_path)
        path, self._writer, self._open_path = self._open_path, None, None
        return path

    close = rotate


def read_rollout_logs(rollouts_dir: str | Path) -> pa.Table:
    """Every closed part of every worker under RUN/rollouts, as one thread table."""
    from reasoning.episode_table import read_threads

    parts = sorted(Path(rollouts_dir).glob(f"*/part-*{SUFFIX}"))
    if not parts:
        return THREAD_SCHEMA.empty_table()
    return pa.concat_tables([read_threads(p) for p in parts])
