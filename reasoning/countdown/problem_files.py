"""Countdown problem files: Parquet (what `treadle data` writes) and JSON lines.

Both hold one problem a row with the columns id (string), numbers (list of ints) and
target (int). Reading checks every row and names the file, row and column of the first
problem found, so a bad data set fails before any work starts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.countdown.problems import Problem
from reasoning.parquet import read_columns

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("numbers", pa.list_(pa.int64()), nullable=False),
        pa.field("target", pa.int64(), nullable=False),
    ]
)
MAX_NUMBERS = 16
MAX_ABS_VALUE = 10**9


class ProblemFileError(ValueError):
    """A problem file that cannot be used; the message names the file and the row."""


def write_problems(path: str | Path, problems: Iterable[Problem]) -> None:
    problems = list(problems)
    table = pa.table(
        {
            "id": [p.id for p in problems],
            "numbers": [list(p.numbers) for p in problems],
            "target": [p.target for p in problems],
        },
        schema=SCHEMA,
    )
    pq.write_table(table, str(path))


def read_problems(path: str | Path) -> list[Problem]:
    """Read a `.parquet` or `.jsonl` problem file, checking every row."""
    path = Path(path)
    if not path.is_file():
        raise ProblemFileError(f"{path}: no such file")
    rows = _read_jsonl(path) if path.suffix in (".jsonl", ".json") else _read_parquet(path)
    problems = [_to_problem(path, i, row) for i, row in enumerate(rows)]
    if not problems:
        raise ProblemFileError(f"{path}: holds no problems")
    ids: set[str] = set()
    for i, p in enumerate(problems):
        if p.id in ids:
            raise ProblemFileError(f"{path}: row {i}: duplicate id {p.id!r}")
        ids.add(p.id)
    return problems


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    return read_columns(path, SCHEMA.names, ProblemFileError).to_pylist()


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError, ValueError) as e:
                raise ProblemFileError(f"{path}: line {i + 1}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise ProblemFileError(f"{path}: line {i + 1}: expected a JSON object")
            yield row


def _to_problem(path: Path, index: int, row: dict[str, Any]) -> Problem:
    where = f"{path}: row {index}"
    for name in SCHEMA.names:
        if row.get(name) is None:
            raise ProblemFileError(f"{where}: missing {name}")
    pid, numbers, target = row["id"], row["numbers"], row["target"]
    if isinstance(pid, int) and not isinstance(pid, bool):
        pid = str(pid)
    if not isinstance(pid, str):
        raise ProblemFileError(f"{where}: id must be a string, got {type(pid).__name__}")
    if not isinstance(numbers, list) or not 1 <= len(numbers) <= MAX_NUMBERS:
        raise ProblemFileError(f"{where}: numbers must be a list of 1 to {MAX_NUMBERS} integers")
    for n in numbers:
        if not _is_int(n) or not 0 <= n < MAX_ABS_VALUE:
            raise ProblemFileError(f"{where}: numbers must be integers in 0 .. {MAX_ABS_VALUE - 1}, got {n!r}")
    if not _is_int(target) or abs(target) >= MAX_ABS_VALUE:
        raise ProblemFileError(f"{where}: target must be an integer below {MAX_ABS_VALUE} in size, got {target!r}")
    return Problem(pid, tuple(numbers), target)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
