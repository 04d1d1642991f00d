"""Parallel-block search traces of Countdown: the solver's search, forked at promising nodes.

The same best-first search as SoS+ and APR (reasoning/countdown/search.py), written in
the parallel-block markup (reasoning/protocols/parallel.py) with the step lines of
reward/trace_steps.py. The root's prompt is the problem line `target|numbers`.

A thread at a node of more than two numbers that may still fork (its depth is below
`max_depth`) opens a block with its k most promising steps as goals - the root first
writes `Sub Call Budget k` (k drawn per episode, as APR's), which every branch sees in
its prefix. Each branch explores its step's subtree: below the depth limit and above two
numbers it forks again the same way; otherwise it searches sequentially in SoS+ lines
and ends with its whole path from the root in `<answer>` or with `Fail`. After the join
the thread concludes: `<answer>PATH</answer></conclusion>` with the first path a branch
found, else `Fail</conclusion>` and the next k steps' block, or nothing more when the
steps are spent (the thread has failed). Steps that read the same (equal numbers) are
explored once. For 34|3 12 19 with k = 2:

    Sub Call Budget 2
    <parallel><thread>19+12=31|3 31</thread><thread>19+3=22|12 22</thread></parallel>
      branch 1 (prompt: all of the above, then `<thread>19+12=31|3 31\\n`):
        31+3=34|34
        <answer>19+12=31|3 31
        31+3=34|34</answer></thread>
      branch 2: 22+12=34|34 ... </thread>
    [join: both goals and bodies, then <conclusion>; observed, not trained]
    <answer>19+12=31|3 31
    31+3=34|34</answer></conclusion><eos>

The final answer sits inside the conclusion, so a path is written once by the branch
that found it and once by the thread that concludes, and `</conclusion>` ends a
successful thread. Every line a thread writes is checkable by the verifier's rules: a
goal is a step from the thread's node, a branch's lines follow from its goal's numbers,
and every `<answer>` is a whole path from the problem's numbers to the target.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from reasoning.countdown.problems import Problem
from reasoning.countdown.search import ordered_steps
from reasoning.countdown.traces import answer_text, depth_first
from reasoning.markup import CONCLUSION_CLOSE
from reasoning.protocols.apr import FAIL
from reasoning.trace_rows import Block, ThreadText
from reward.trace_steps import Step, render_problem, render_step


@dataclass
class ParallelTrace:
    problem: Problem
    root: ThreadText
    solution: list[Step] | None
    sub_calls: int


def prompt_text(problem: Problem) -> str:
    return render_problem(problem.target, problem.numbers) + "\n"


def distinct_steps(steps: list[Step]) -> list[Step]:
    """`steps` without repeats of the same line (kept in order): equal numbers give equal steps."""
    seen: set[str] = set()
    kept = []
    for step in steps:
        line = render_step(step)
        if line not in seen:
            seen.add(line)
            kept.append(step)
    return kept


def parallel_trace(
    problem: Problem, rng: random.Random, sub_calls: int, max_depth: int, beam: int = 0
) -> ParallelTrace:
    """The parallel-block trace of `problem`: blocks of `sub_calls` goals, forking down to `max_depth`."""
    assert sub_calls >= 1 and max_depth >= 0, (sub_calls, max_depth)

    def run(numbers: tuple[int, ...], path: list[Step], depth: int) -> tuple[ThreadText, list[Step] | None]:
        if depth >= max_depth or len(numbers) <= 2:
            lines: list[str] = []
            found = depth_first(numbers, problem.target, path, lines, rng, beam)
            body = "".join(f"{line}\n" for line in lines) + (answer_text(found) if found else FAIL)
            return ThreadText([body]), found
        thread = ThreadText([f"Sub Call Budget {sub_calls}\n"] if depth == 0 else [])
        steps = distinct_steps(ordered_steps(numbers, problem.target, rng))[: beam or None]
        for start in range(0, len(steps), sub_calls):
            batch = steps[start : start + sub_calls]
            results = [run(step.left, path + [step], depth + 1) for step in batch]
            thread.parts.append(Block([render_step(step) for step in batch], [branch for branch, _ in results]))
            found = next((path for _, path in results if path is not None), None)
            if found is not None:
                thread.parts.append(answer_text(found) + CONCLUSION_CLOSE)
                return thread, found
            thread.parts.append(FAIL + CONCLUSION_CLOSE)
        return thread, None

    root, solution = run(problem.numbers, [], 0)
    return ParallelTrace(problem, root, solution, sub_calls)
