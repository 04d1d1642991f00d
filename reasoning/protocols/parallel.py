"""Parallel-block markup (ThreadWeaver / Multiverse style): branches that share the parent's prefix.

A thread opens a block by writing an outline, one goal per `<thread>` header, and stops
at `</parallel>`:

    <parallel><thread>GOAL 1</thread><thread>GOAL 2</thread></parallel>

The runtime then runs one branch per goal. A branch's prompt is the parent's whole
context so far (its prompt and everything in its output, the outline included) followed
by `branch_prompt_suffix(goal)` = `<thread>GOAL\n`; the branch writes its BODY and ends
with `</thread>` or EOS. This is the difference from APR (reasoning/protocols/apr.py),
whose children see only the parent's prompt and a short child prompt of their own.
When every branch has ended, the runtime appends the join to the parent - observed, not
trained - and the parent writes its conclusion and final answer:

    <thread>GOAL 1\nBODY 1</thread><thread>GOAL 2\nBODY 2</thread><conclusion>

so the parent's full sequence reads

    ...<parallel><thread>G1</thread><thread>G2</thread></parallel><thread>G1\nBODY 1</thread>
    <thread>G2\nBODY 2</thread><conclusion>CONCLUSION</conclusion>\n<answer>...</answer>

(one line, wrapped here). Each branch sees exactly what the joined sequence shows before
its own body, minus its siblings: the Multiverse attention pattern, so a branch's
rollout is what supervised training on the joined sequence with that mask teaches.
A branch may open a block of its own (nesting, bounded by the runtime's depth limit).
A branch the runtime ended (bad markup, too deep, out of budget or time) is joined with
the body `Fail`, so every `<parallel>` in a context is followed by a well-formed join.

Covered: rendering, parsing and validating the outline; rendering the branch prompt
suffix and the join. Not covered: running branches (reasoning/controllers/parallel.py).
"""
from __future__ import annotations

from typing import Sequence

from reasoning.markup import (
    CONCLUSION_OPEN,
    MARKUP_TAGS,
    MarkupError,
    PARALLEL_CLOSE,
    PARALLEL_OPEN,
    THREAD_CLOSE,
    THREAD_OPEN,
)

FAILED_BODY = "Fail"
"""The body joined in place of a branch that the runtime ended."""


def render_block(goals: Sequence[str]) -> str:
    """The outline a thread writes to open a block: `<parallel><thread>G</thread>...</parallel>`."""
    return PARALLEL_OPEN + "".join(f"{THREAD_OPEN}{g}{THREAD_CLOSE}" for g in goals) + PARALLEL_CLOSE


def branch_prompt_suffix(goal: str) -> str:
    """What follows the parent's context in a branch's prompt: `<thread>GOAL\\n`."""
    return f"{THREAD_OPEN}{goal}\n"


def render_join(goals: Sequence[str], bodies: Sequence[str | None]) -> str:
    """The join appended to the parent; a None body (a branch the runtime ended) is `Fail`.

    >>> render_join(["a", "b"], ["1", None])
    '<thread>a\\n1</thread><thread>b\\nFail</thread><conclusion>'
    """
    if len(goals) != len(bodies):
        raise ValueError(f"{len(goals)} goals but {len(bodies)} bodies")
    parts = (
        branch_prompt_suffix(goal) + (FAILED_BODY if body is None else body) + THREAD_CLOSE
        for goal, body in zip(goals, bodies)
    )
    return "".join(parts) + CONCLUSION_OPEN


def parse_block(text: str, max_threads: int) -> list[str]:
    """The goals of the outline that `text` ends with.

    `text` is a thread's output up to and including `</parallel>`; the outline starts at
    its last `<parallel>`. Whitespace between headers is allowed. Raises MarkupError for
    a missing or unbalanced block, text outside the headers, an empty goal, a goal that
    spans lines or holds a tag (a nested block belongs in a branch's body, not its goal),
    no goals, or more than `max_threads` goals.
    """
    if not text.endswith(PARALLEL_CLOSE):
        raise MarkupError(f"output does not end with {PARALLEL_CLOSE}")
    start = text.rfind(PARALLEL_OPEN)
    if start < 0:
        raise MarkupError(f"{PARALLEL_CLOSE} without {PARALLEL_OPEN}")
    body = text[start + len(PARALLEL_OPEN) : -len(PARALLEL_CLOSE)]
    goals: list[str] = []
    position = 0
    while True:
        while position < len(body) and body[position].isspace():
            position += 1
        if position == len(body):
            break
        if not body.startswith(THREAD_OPEN, position):
            raise MarkupError(f"expected {THREAD_OPEN} in the outline at {body[position:position + 20]!r}")
        end = body.find(THREAD_CLOSE, position)
        if end < 0:
            raise MarkupError(f"{THREAD_OPEN} without {THREAD_CLOSE}")
        goal = body[position + len(THREAD_OPEN) : end]
        if not goal.strip():
            raise MarkupError("empty goal")
        if "\n" in goal:
            raise MarkupError("a goal spans more than one line")
        if any(tag in goal for tag in MARKUP_TAGS):
            raise MarkupError("tags inside a goal")
        goals.append(goal)
        if len(goals) > max_threads:
            raise MarkupError(f"more than {max_threads} threads in one block")
        position = end + len(THREAD_CLOSE)
    if not goals:
        raise MarkupError("parallel block with no threads")
    return goals
