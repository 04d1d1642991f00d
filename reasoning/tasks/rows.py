"""Reading the rows of a user's data file (.jsonl or .parquet) as dicts, with where each came from.

Every column is kept (a custom reward function sees them all). Errors are TaskError
naming the file and the row (and line, for JSON lines); nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.tasks.prompts import TaskError

SUFFIXES = (".parquet", ".jsonl")


def read_rows(
    path: str | Path, columns: Sequence[str] | None = None, error: type[ValueError] = TaskError
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of the file, in file order; `columns` limits what a
    Parquet file's rows hold (a JSON line keeps all); `error` is the exception raised."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise error(f"{path}: unknown suffix {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise error(f"{path}: no such file")
    if path.suffix == ".parquet":
        try:
            names = pq.read_schema(str(path)).names
            wanted = None if columns is None else [n for n in columns if n in names]
            rows = pq.read_table(str(path), columns=wanted).to_pylist()
        except (pa.ArrowInvalid, OSError) as e:
            raise error(f"{path}: not a readable Parquet file ({e})") from None
        for index, row in enumerate(rows):
            yield f"{path}: row {index}", row
        return
    index = 0
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: row {index} (line {line_number})"
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                raise error(f"{where}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row
            index += 1


def read_messages(where: str, value: Any, column: str = "messages") -> list[dict[str, str]]:
    """A chat as a list of {"role", "content"} string dicts; TaskError naming the row otherwise."""
    if not isinstance(value, list) or not value:
        raise TaskError(f"{where}: column {column}: expected a non-empty list of messages")
    messages = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise TaskError(f"{where}: column {column}: message {i} must be an object with string role and content")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def row_id(where: str, index: int, row: dict[str, Any]) -> str:
    """The row's `id` (a string or an integer) or, without one, its index."""
    value = row.get("id")
    if value is None:
        return str(index)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise TaskError(f"{where}: column id: expected a non-empty string or an integer, got {value!r}"[:300])
    return str(value)
