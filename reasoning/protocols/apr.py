"""APR spawn/join markup: one definition for trace generation and the reasoning runtime.

A parent thread forks by writing

    <spawn><thread>CHILD 1</thread><thread>CHILD 2</thread></spawn>

and stops there. Each child runs as its own sequence whose prompt is the parent's prompt
followed by the child's text and a newline (so children share the parent's prompt as a
prefix, never its generated text). When all children end, the runtime appends

    <join><thread>RESULT 1</thread><thread>RESULT 2</thread></join>

to the parent - observed, not trained - and the parent continues. A child's result is
the body of its final `<answer>` or `Fail`.
"""
from __future__ import annotations

from typing import Sequence

from reasoning.markup import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    JOIN_CLOSE,
    JOIN_OPEN,
    MarkupError,
    SPAWN_CLOSE,
    SPAWN_OPEN,
    THREAD_CLOSE,
    THREAD_OPEN,
)

FAIL = "Fail"


def render_spawn(children: Sequence[str]) -> str:
    return SPAWN_OPEN + "".join(f"{THREAD_OPEN}{c}{THREAD_CLOSE}" for c in children) + SPAWN_CLOSE


def render_join(results: Sequence[str | None]) -> str:
    """Join markup for child results; None (a child that found nothing) is written `Fail`."""
    body = "".join(f"{THREAD_OPEN}{FAIL if r is None else r}{THREAD_CLOSE}" for r in results)
    return JOIN_OPEN + body + JOIN_CLOSE


def child_prompt(parent_prompt: str, child: str) -> str:
    return f"{parent_prompt}{child}\n"


def parse_spawn(text: str, max_children: int) -> list[str]:
    """The children of the spawn block that `text` ends with.

    `text` is a parent's output up to and including `</spawn>`. Raises MarkupError for
    a missing or unbalanced block, an empty child, nested tags, or more than
    `max_children` children.
    """
    if not text.endswith(SPAWN_CLOSE):
        raise MarkupError(f"output does not end with {SPAWN_CLOSE}")
    start = text.rfind(SPAWN_OPEN)
    if start < 0:
        raise MarkupError(f"{SPAWN_CLOSE} without {SPAWN_OPEN}")
    body = text[start + len(SPAWN_OPEN) : -len(SPAWN_CLOSE)]
    children: list[str] = []
    position = 0
    while position < len(body):
        if not body.startswith(THREAD_OPEN, position):
            raise MarkupError(f"expected {THREAD_OPEN} inside the spawn block at {body[position:position + 20]!r}")
        end = body.find(THREAD_CLOSE, position)
        if end < 0:
            raise MarkupError(f"{THREAD_OPEN} without {THREAD_CLOSE}")
        child = body[position + len(THREAD_OPEN) : end]
        if not child.strip():
            raise MarkupError("empty child thread")
        if any(tag in child for tag in (THREAD_OPEN, SPAWN_OPEN, JOIN_OPEN, ANSWER_OPEN)):
            raise MarkupError("tags inside a child thread")
        children.append(child)
        if len(children) > max_children:
            raise MarkupError(f"more than {max_children} children in one spawn")
        position = end + len(THREAD_CLOSE)
    if not children:
        raise MarkupError("spawn block with no threads")
    return children


def child_result(output: str) -> str | None:
    """What a finished child returns to its parent: its last answer's body, or None."""
    end = output.rfind(ANSWER_CLOSE)
    start = output.rfind(ANSWER_OPEN, 0, end) if end >= 0 else -1
    if start < 0:
        return None
    return output[start + len(ANSWER_OPEN) : end]
