"""Reading Parquet files that must have certain columns, with errors that name the file."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq


def read_columns(path: Path, names: Sequence[str], error: type[ValueError]) -> pa.Table:
    """The table at `path` restricted to `names`; raises `error` naming the file and what is wrong."""
    try:
        table = pq.read_table(str(path))
    except (pa.ArrowInvalid, OSError) as e:
        raise error(f"{path}: not a readable Parquet file ({e})") from None
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise error(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(names)}")
    return table.select(list(names))
