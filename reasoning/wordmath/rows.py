"""Word problems as data rows: GSM8K-style problem files and chat SFT examples.

Problem row (train.jsonl / val.jsonl, read by the `math` task as is):
  id, question, answer (the worked solution, one step a line, then "#### N" as in
  GSM8K), structure (JSON: template, numbers, steps as {op, args, value} with args "xI"
  = the question's I-th number and "sJ" = step J's value, branches = the steps of each
  independent sub-quantity, labels = whose quantity each branch computes (the person's name),
  answer). The wordmath task reads a problem file as WordMathProblems: math problems that
  keep their structure, from which reasoning/wordmath/parallel_traces.py writes traces.
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

from dataclasses import dataclass

from reasoning.math_task import MathFileError, MathProblem, math_prompt, read_math_problems
from reasoning.tasks.rows import read_rows
from reasoning.wordmath.problems import WordProblem

COLUMNS = ("id", "question", "answer", "structure")


@dataclass(frozen=True, slots=True)
class WordMathProblem(MathProblem):
    """A math problem (the task's prompt, score and key are the math task's) that keeps its
    generator's structure."""

    structure: str = ""
    """The problem row's `structure` (JSON, see `structure`); empty when the file has none."""


def solution(problem: WordProblem) -> str:
    """GSM8K's form: the steps, then "#### N"."""
    return "\n".join([*problem.lines, f"#### {problem.answer}"])


def chat_solution(problem: WordProblem) -> str:
    """What the model learns to write: the steps, then the answer in \\boxed{}."""
    return "\n".join([*problem.lines, answer_line(problem.answer)])


def answer_line(answer: int) -> str:
    """The last line of a chat answer, which the math task's verifier reads."""
    return f"The answer is \\boxed{{{answer}}}."


def structure(problem: WordProblem) -> dict[str, Any]:
    return {
        "template": problem.template,
        "numbers": list(problem.numbers),
        "steps": [{"op": s.op, "args": list(s.args), "value": s.value} for s in problem.steps],
        "branches": [list(b) for b in problem.branches],
        "labels": list(problem.labels),
        "answer": problem.answer,
    }


def math_problem(problem: WordProblem) -> WordMathProblem:
    """The problem as the `wordmath` task reads it from a file."""
    record = json.dumps(structure(problem), sort_keys=True)
    return WordMathProblem(problem.id, problem.question, solution(problem), record)


def read_word_problems(path: str | Path) -> list[WordMathProblem]:
    """The problems of a file as the math task reads them, each with its `structure` column
    (empty where a row has none); MathFileError naming the row for a structure that is not text."""
    problems = read_math_problems(path)
    structures = []
    for where, row in read_rows(path, ("structure",), MathFileError):
        value = row.get("structure")
        if value is not None and not isinstance(value, str):
            raise MathFileError(f"{where}: column structure: expected JSON text, got {type(value).__name__}")
        structures.append(value or "")
    assert len(structures) == len(problems), (path, len(structures), len(problems))
    return [WordMathProblem(p.id, p.question, p.answer, s) for p, s in zip(problems, structures)]


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
