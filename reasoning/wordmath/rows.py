"""Word problems as data rows: GSM8K-style problem files and chat SFT examples.

Problem row (train.jsonl / val.jsonl, read by the `math` task as is):
  id, question, answer (the worked solution, one step a line, then "#### N" as in
  GSM8K), structure (JSON: template, numbers, steps as {op, args, value} with args "xI"
  = the question's I-th number and "sJ" = step J's value, branches = the steps of each
  independent sub-quantity, answer).
SFT row (sft.jsonl, for `treadle sft` with reasoning/sft_data.py): id, question, answer
(kept so the SFT run records which problems it trained on) and `messages`: the user's
message is the question with the math task's instruction, exactly as the task prompts
(reasoning/math_task.py `math_prompt`); the assistant's is the same worked solution
ending in "The answer is \\boxed{N}." instead of "#### N".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from reasoning.math_task import MathProblem, math_prompt
from reasoning.wordmath.problems import WordProblem

COLUMNS = ("id", "question", "answer", "structure")


def solution(problem: WordProblem) -> str:
    """GSM8K's form: the steps, then "#### N"."""
    return "\n".join([*problem.lines, f"#### {problem.answer}"])


def chat_solution(problem: WordProblem) -> str:
    """What the model learns to write: the steps, then the answer in \\boxed{}."""
    return "\n".join([*problem.lines, f"The answer is \\boxed{{{problem.answer}}}."])


def structure(problem: WordProblem) -> dict[str, Any]:
    return {
        "template": problem.template,
        "numbers": list(problem.numbers),
        "steps": [{"op": s.op, "args": list(s.args), "value": s.value} for s in problem.steps],
        "branches": [list(b) for b in problem.branches],
        "answer": problem.answer,
    }


def math_problem(problem: WordProblem) -> MathProblem:
    """The problem as the `math` task reads it from a file."""
    return MathProblem(problem.id, problem.question, solution(problem))


def problem_row(problem: WordProblem) -> dict[str, Any]:
    return {"id": problem.id, "question": problem.question, "answer": solution(problem),
            "structure": json.dumps(structure(problem), sort_keys=True)}  # fmt: skip


def sft_row(problem: WordProblem) -> dict[str, Any]:
    messages = [
        {"role": "user", "content": math_prompt(math_problem(problem))},
        {"role": "assistant", "content": chat_solution(problem)},
    ]
    return {"id": problem.id, "question": problem.question, "answer": solution(problem), "messages": messages}


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """JSON lines (.jsonl) or Parquet (.parquet), by the suffix of `path`."""
    path = Path(path)
    rows = list(rows)
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), str(path))
    else:
        raise ValueError(f"{path}: unknown suffix {path.suffix!r}; expected .jsonl or .parquet")
