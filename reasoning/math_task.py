"""The `math` task: GSM8K / MATH-500-style problems from local files, and their prompt.

A problem file is Parquet (`.parquet`) or JSON lines (`.jsonl`), one problem a row:

- the question in a `question` column (GSM8K) or a `problem` column (MATH-500), not both;
- the gold answer in `answer`: a string such as GSM8K's worked solution ending in
  "#### 72", or MATH-500's bare LaTeX "\\frac{14}{3}" (an integer is taken as its
  decimal string); reward.math_answer reads the final answer out of either;
- an optional `id` (string or integer; default: the row index as a string);
- any other column (MATH-500's `solution`, `subject`, `level`, ...) is ignored.

Reading checks every row and raises MathFileError naming the file, the row (and the
line, for JSON lines) and the column, so a bad data set fails before any generation.
Nothing is downloaded: fetching GSM8K or MATH-500 is the user's step, and
reasoning.math_samples writes the small sample the tests use.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.tasks.rows import read_rows

QUESTION_COLUMNS = ("question", "problem")
"""Accepted names of the question column: GSM8K's, then MATH-500's."""
KNOWN_COLUMNS = ("id", *QUESTION_COLUMNS, "answer")
SUFFIXES = (".parquet", ".jsonl")
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""Appended to every question; the verifier looks for the last \\boxed{} first."""


class MathFileError(ValueError):
    """A math problem file that cannot be used; the message names file, row and column."""


@dataclass(frozen=True, slots=True)
class MathProblem:
    """One problem: `answer` is the gold as written in the file (e.g. "...#### 72")."""

    id: str
    question: str
    answer: str

    @property
    def key(self) -> tuple[str, str]:
        """Identity for seen/unseen accounting in evaluation: the question."""
        return ("math", self.question)


def math_prompt(problem: MathProblem) -> str:
    """The question followed by the instruction to box the final answer."""
    return f"{problem.question}\n\n{MATH_INSTRUCTION}"


def read_math_problems(path: str | Path) -> list[MathProblem]:
    """Every problem in the `.parquet` or `.jsonl` file at `path`, in file order."""
    path = Path(path)
    rows = read_rows(path, KNOWN_COLUMNS, MathFileError)
    problems: list[MathProblem] = []
    first_row_of: dict[str, int] = {}
    for index, (where, row) in enumerate(rows):
        problem = _to_problem(where, index, row)
        if problem.id in first_row_of:
            first = first_row_of[problem.id]
            raise MathFileError(f"{where}: column id: duplicate id {problem.id!r} (first in row {first})")
        first_row_of[problem.id] = index
        problems.append(problem)
    if not problems:
        raise MathFileError(f"{path}: holds no problems")
    return problems


def write_math_problems(path: str | Path, problems: Iterable[MathProblem]) -> None:
    """Write `problems` with columns id, question, answer; format by suffix of `path`."""
    path = Path(path)
    rows = [{"id": p.id, "question": p.question, "answer": p.answer} for p in problems]
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    elif path.suffix == ".parquet":
        schema = pa.schema([(name, pa.string()) for name in ("id", "question", "answer")])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
    else:
        raise MathFileError(f"{path}: unknown suffix {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")


def _to_problem(where: str, index: int, row: dict[str, Any]) -> MathProblem:
    present = [name for name in QUESTION_COLUMNS if row.get(name) is not None]
    if not present:
        raise MathFileError(f"{where}: missing column question (or problem)")
    if len(present) > 1:
        raise MathFileError(f"{where}: both question and problem columns are set; keep one")
    question = _text(where, present[0], row[present[0]], allow_int=False)
    if row.get("answer") is None:
        raise MathFileError(f"{where}: missing column answer")
    answer = _text(where, "answer", row["answer"], allow_int=True)
    pid = str(index) if row.get("id") is None else _text(where, "id", row["id"], allow_int=True)
    return MathProblem(pid, question, answer)


def _text(where: str, column: str, value: Any, allow_int: bool) -> str:
    """`value` as a non-empty string; integers (not bools) are accepted when `allow_int`."""
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kinds = "a string or an integer" if allow_int else "a string"
        raise MathFileError(f"{where}: column {column}: expected {kinds}, got {type(value).__name__}")
    if not value.strip():
        raise MathFileError(f"{where}: column {column}: empty")
    return value
