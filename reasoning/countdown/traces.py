"""Search traces for supervised training: sequential SoS+ and APR spawn/join.

Both come from the same best-first depth-first search (reasoning/countdown/search.py),
written with the step lines of reward/trace_steps.py. A thread's prompt is the problem
line `target|numbers` followed by the path of steps that led to its node, one per line;
its output ends with the solution path inside `<answer>` or with `Fail`.

SoS+ (one thread):

    Token Budget 128
    19-3=16|12 16           a step; its line is followed by the search below it
    16+12=28|28             at two numbers only the step closest to the target is tried
    19+12=31|3 31
    31-3=28|28
    ...
    <answer>19+3=22|12 22
    22+12=34|34</answer>

The budget is the smallest bin that holds the whole output, so at inference a budget in
the prompt asks for a search of that size.

APR (a tree of threads): a thread whose node has more than two numbers and that may
still fork writes `Sub Call Budget k`, then spawns its k most promising steps as
children (reasoning/protocols/apr.py), is joined with their results and either copies
the first found path into its answer or spawns the next k. A thread at the depth limit,
or at a node of two numbers, searches sequentially as in SoS+ and returns its path or
`Fail`. The join text is inserted by the runtime, so it is observed, not trained.

Parallel blocks from the same search: reasoning/countdown/parallel_traces.py.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from reasoning.countdown.problems import Problem
from reasoning.countdown.search import ordered_steps
from reasoning.protocols.apr import FAIL, child_prompt, render_join, render_spawn
from reward.trace_steps import Step, render_problem, render_step

BUDGET_BINS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclass
class ThreadTrace:
    """One thread of a trace episode: its prompt and its output as (text, trainable) segments."""

    thread_id: int
    parent_id: int  # -1 for the root
    depth: int
    prompt: str
    segments: list[tuple[str, bool]] = field(default_factory=list)
    spawn_index: int = -1
    """Which spawn of the parent started this thread; -1 for the root."""

    @property
    def output(self) -> str:
        return "".join(text for text, _ in self.segments)


@dataclass
class TraceEpisode:
    problem: Problem
    kind: str  # "sos" | "apr"
    threads: list[ThreadTrace]
    solution: list[Step] | None


def render_path(path: list[Step]) -> str:
    return "\n".join(render_step(step) for step in path)


def answer_text(path: list[Step]) -> str:
    return f"<answer>{render_path(path)}</answer>"


def budget_bin(num_tokens: int) -> int:
    return next((b for b in BUDGET_BINS if b >= num_tokens), BUDGET_BINS[-1])


def _prompt(problem: Problem, path: list[Step]) -> str:
    return "".join(f"{line}\n" for line in [render_problem(problem.target, problem.numbers), *map(render_step, path)])


def depth_first(
    numbers: tuple[int, ...], target: int, path: list[Step], lines: list[str], rng: random.Random, beam: int
) -> list[Step] | None:
    """Search below `numbers`, appending each tried step to `lines`; the found path or None."""
    steps = ordered_steps(numbers, target, rng)
    if len(numbers) == 2:
        best = steps[0]  # closest to the target: if it misses, every step here misses
        lines.append(render_step(best))
        return path + [best] if best.result == target else None
    for step in steps[: beam or None]:
        lines.append(render_step(step))
        found = depth_first(step.left, target, path + [step], lines, rng, beam)
        if found is not None:
            return found
    return None


def sos_trace(problem: Problem, rng: random.Random, beam: int = 0, count_tokens=len) -> TraceEpisode:
    """The sequential SoS+ trace of `problem`; `count_tokens` sizes the budget bin."""
    lines: list[str] = []
    solution = depth_first(problem.numbers, problem.target, [], lines, rng, beam)
    body = "".join(f"{line}\n" for line in lines) + (answer_text(solution) if solution else FAIL)
    budget = budget_bin(count_tokens(f"Token Budget {BUDGET_BINS[-1]}\n{body}") + 1)
    thread = ThreadTrace(0, -1, 0, _prompt(problem, []), [(f"Token Budget {budget}\n{body}", True)])
    return TraceEpisode(problem, "sos", [thread], solution)


def apr_trace(
    problem: Problem, rng: random.Random, sub_calls: int, max_depth: int, beam: int = 0
) -> TraceEpisode:
    """The APR spawn/join trace tree of `problem` with `sub_calls` children per spawn."""
    threads: list[ThreadTrace] = []

    def run(numbers: tuple[int, ...], path: list[Step], parent_id: int, depth: int, spawn_index: int) -> list[Step] | None:
        thread = ThreadTrace(len(threads), parent_id, depth, _prompt(problem, path), spawn_index=spawn_index)
        threads.append(thread)
        if depth >= max_depth or len(numbers) <= 2:
            lines: list[str] = []
            found = depth_first(numbers, problem.target, path, lines, rng, beam)
            tail = answer_text(found) if found else FAIL
            thread.segments.append(("".join(f"{line}\n" for line in lines) + tail, True))
            return found
        thread.segments.append((f"Sub Call Budget {sub_calls}\n", True))
        steps = ordered_steps(numbers, problem.target, rng)[: beam or None]
        for start in range(0, len(steps), sub_calls):
            batch = steps[start : start + sub_calls]
            thread.segments.append((render_spawn([render_step(s) for s in batch]), True))
            results = [run(s.left, path + [s], thread.thread_id, depth + 1, start // sub_calls) for s in batch]
            thread.segments.append((render_join([render_path(r) if r else None for r in results]), False))
            found = next((r for r in results if r is not None), None)
            if found is not None:
                thread.segments.append(("\n" + answer_text(found), True))
                return found
        thread.segments.append(("\n" + FAIL, True))
        return None

    solution = run(problem.numbers, [], -1, 0, -1)
    return TraceEpisode(problem, "apr", threads, solution)


def check_child_prompts(episode: TraceEpisode) -> None:
    """Assert the runtime's rule: a child's prompt is its parent's prompt + its spawn text."""
    by_id = {t.thread_id: t for t in episode.threads}
    for thread in episode.threads:
        if thread.parent_id >= 0:
            parent = by_id[thread.parent_id]
            child_text = thread.prompt[len(parent.prompt) :].rstrip("\n")
            assert thread.prompt == child_prompt(parent.prompt, child_text)
