"""Parallel worked solutions of word problems: independent sub-quantities in parallel threads.

A problem whose structure (reasoning/wordmath/rows.py) has two or three branches - parts
that take steps of their own and never use each other's values - is written as one
parallel block (reasoning/protocols/parallel.py): the assistant's answer opens with an
outline of one goal per branch, the branch's label (the person whose quantity it
computes) spelled as the question writes it, so that its tokens are the very tokens of
the person's part there (" Ana" mid-sentence, "Ben" at the start; a name is one token or
two, so the outline stays short); each branch computes its part's steps, one solution
line each; after the join the assistant concludes with the steps that combine the parts
and the answer line the math task's verifier reads:

    <parallel><thread>Ben</thread><thread> Ana</thread></parallel>
      branch 1 (prompt: the chat prompt, the outline, `<thread>Ben\\n`):
        Ben spends 3 * 5 = 15 dollars.</thread>
      branch 2: The pens cost 2 * 4 = 8 dollars.\\nAna spends 8 + 6 = 14 dollars.</thread>
    [join: both goals and bodies, then <conclusion>; observed, not trained]
    They spend 15 + 14 = 29 dollars.
    The answer is \\boxed{29}.</conclusion><|im_end|>

A problem with fewer than two branches is written sequentially, exactly as the chat SFT
examples: its solution lines, then the answer line. The prompt is the task's (the
tokenizer's chat template with the question and the math instruction), and the rows are
the parallel controller's (reasoning/trace_rows.py), so the model learns what rollout
runs. Problems come with their structure: those `treadle data wordmath` writes, read by
the wordmath task (WordMathProblem), or generated (rows.math_problem).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from reasoning.markup import CONCLUSION_CLOSE, MARKUP_TAGS
from reasoning.tasks.base import problem_json
from reasoning.trace_rows import Block, ThreadText, TraceSetStats, parallel_rows
from reasoning.wordmath.rows import WordMathProblem, answer_line

KINDS = ("parallel", "sequential")


class StructureError(ValueError):
    """A problem whose structure cannot give a trace; the message names the problem."""


@dataclass(frozen=True)
class Solution:
    """A problem's worked solution by structure: one line per step."""

    lines: tuple[str, ...]
    branches: tuple[tuple[int, ...], ...]
    goals: tuple[str, ...]
    """One per branch: its label (the person) as the question writes it (`as_written`)."""
    answer: int


def read_solution(problem: WordMathProblem) -> Solution:
    """The solution lines (from the GSM8K answer) with the structure's branches and their goals."""
    where = f"problem {problem.id}"
    if not getattr(problem, "structure", ""):
        raise StructureError(
            f"{where} has no structure: traces need problem files written by `treadle data wordmath` "
            "(their structure column)"
        )
    try:
        record = json.loads(problem.structure)
    except json.JSONDecodeError as e:
        raise StructureError(f"{where}: structure is not JSON ({e})") from None
    if not isinstance(record, dict) or not all(key in record for key in ("steps", "branches", "labels", "answer")):
        raise StructureError(
            f"{where}: structure lacks steps, branches, labels or answer (labels came with parallel traces: "
            "regenerate the problems with `treadle data wordmath`)"
        )
    *lines, last = problem.answer.split("\n")
    answer = record["answer"]
    if last != f"#### {answer}" or len(lines) != len(record["steps"]):
        raise StructureError(
            f"{where}: the answer column does not show the structure's {len(record['steps'])} steps and "
            f"'#### {answer}'"
        )
    branches = tuple(tuple(b) for b in record["branches"])
    labels = tuple(record["labels"])
    steps = {i for b in branches for i in b}
    if len(labels) != len(branches):
        raise StructureError(f"{where}: structure has {len(labels)} labels for {len(branches)} branches")
    if not steps <= set(range(len(lines))):
        raise StructureError(f"{where}: structure's branches name steps outside 0 .. {len(lines) - 1}")
    for label in labels:
        if not isinstance(label, str) or not label.strip() or "\n" in label or any(t in label for t in MARKUP_TAGS):
            raise StructureError(f"{where}: label {label!r} cannot be a goal (one line of text without tags)")
    return Solution(tuple(lines), branches, tuple(as_written(label, problem.question) for label in labels), answer)


def as_written(label: str, question: str) -> str:
    """`label` spelled as the question first writes it: with the space before it when one
    precedes it there. A byte-level BPE gives " Ben" and "Ben" different tokens, so the
    goal is the very token of the person's part in the question and a branch finds its
    part by matching it (a 4.9M model trained here did not learn to match "Ben" to " Ben").
    """
    found = re.search(rf"(?<!\w){re.escape(label)}(?!\w)", question)
    return " " + label if found and found.start() > 0 and question[found.start() - 1] == " " else label


def solution_thread(solution: Solution, kind: str = "parallel") -> ThreadText:
    """The assistant's answer: a block of the branches when there are two or more and
    `kind` is parallel, else the lines in order; either way ending in the answer line."""
    assert kind in KINDS, kind
    if kind == "sequential" or len(solution.branches) < 2:
        return ThreadText(["\n".join([*solution.lines, answer_line(solution.answer)])])
    in_branch = {i for branch in solution.branches for i in branch}
    branches = [ThreadText(["\n".join(solution.lines[i] for i in branch)]) for branch in solution.branches]
    combine = [line for i, line in enumerate(solution.lines) if i not in in_branch]
    conclusion = "\n".join([*combine, answer_line(solution.answer)]) + CONCLUSION_CLOSE
    return ThreadText([Block(list(solution.goals), branches), conclusion])


def trace_rows(
    problems: Iterable[WordMathProblem],
    kind: str,
    max_tokens: int,
    tokenizer: Any,
    prompt_ids: Callable[[Any], list[int]],
    task_name: str = "wordmath",
) -> tuple[list[dict[str, Any]], TraceSetStats]:
    """Rows of the `kind` traces of `problems` (prompts by `prompt_ids`), and what was kept;
    an episode with a thread longer than `max_tokens` is left out. StructureError for a
    problem without a usable structure."""
    rows: list[dict[str, Any]] = []
    stats = TraceSetStats()
    for problem in problems:
        stats.num_problems += 1
        episode_id = f"{problem.id}/{kind}"
        identity = {"episode_id": episode_id, "group_id": episode_id, "task": task_name,
                    "problem_id": problem.id, "problem": problem_json(problem)}  # fmt: skip
        thread = solution_thread(read_solution(problem), kind)
        episode = parallel_rows(thread, prompt_ids(problem), tokenizer, identity)
        if max(len(row["token_ids"]) for row in episode) > max_tokens:
            stats.num_too_long += 1
            continue
        rows += episode
        stats.add(episode)
    return rows, stats
