"""Trace trees as episode-table rows (SFT data), for any task: parallel blocks token for token.

A task's trace generator (reasoning/countdown/, reasoning/wordmath/) writes what each
thread of an ideal episode says; this module turns it into the rows of the episode table
(reasoning/episode_table.py) that the parallel controller (reasoning/controllers/parallel.py)
would record for that episode, so that supervised training teaches exactly what rollout
runs:

- a thread is `ThreadText`: its text in order, with the parallel `Block`s it opens; a
  block's outline (`<parallel><thread>GOAL</thread>...</parallel>`) ends the generated
  segment before it (reasoning/protocols/parallel.py renders it);
- each generated segment is tokenized as one piece (what the model writes between two
  stops); a branch's prompt is its parent's whole context (prompt and output so far)
  followed by the tokens of `branch_prompt_suffix(goal)`, tokenized alone as the runtime
  does; a branch's output ends with the `</thread>` token, the root's with EOS;
- the join the runtime appends to the parent - per branch the suffix's tokens, the
  branch's own output ids without its `</thread>`, then `</thread>`; then `<conclusion>` -
  is observed, not trained; the text after a block is the parent's conclusion (it
  contains `</conclusion>`) and whatever follows it;
- thread ids are given as the runtime gives them: the branches of a block get
  consecutive ids when the block opens; `spawn_index` counts the blocks of the parent.
The episode's total and critical-path tokens count trained tokens (what the model
generated), with reasoning.episode.critical_path.

Not covered: APR spawn/join traces, whose children have prompts of their own
(reasoning/countdown/trace_tokens.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoning.episode import critical_path
from reasoning.markup import CONCLUSION_OPEN, PARALLEL_TAGS, THREAD_CLOSE, tag_token_ids
from reasoning.protocols.parallel import branch_prompt_suffix, render_block


@dataclass
class Block:
    """A parallel block a thread opens: one goal and one branch per thread of the outline."""

    goals: list[str]
    branches: list[ThreadText]

    def __post_init__(self) -> None:
        assert len(self.goals) == len(self.branches) > 0, (len(self.goals), len(self.branches))


@dataclass
class ThreadText:
    """What one thread writes: text and the blocks it opens, in order. A branch's text
    leaves out the `</thread>` that ends it and the root's the EOS (the rows add them)."""

    parts: list[str | Block] = field(default_factory=list)

    def blocks(self) -> list[Block]:
        return [part for part in self.parts if isinstance(part, Block)]


@dataclass
class TraceSetStats:
    num_problems: int = 0
    num_episodes: int = 0
    num_threads: int = 0
    num_tokens: int = 0
    num_failed: int = 0
    """Searches that found no solution (left out unless include_failed)."""
    num_too_long: int = 0
    """Episodes left out because a thread exceeded max_tokens."""

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Count one kept episode's rows."""
        self.num_episodes += 1
        self.num_threads += len(rows)
        self.num_tokens += sum(len(row["token_ids"]) for row in rows)


def set_episode_metrics(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill every row's episode total and critical-path tokens (trained tokens) in place."""
    tree = [(r["thread_id"], r["parent_id"], r["spawn_index"], sum(r["trainable"])) for r in rows]
    total, critical = sum(n for *_, n in tree), critical_path(tree)
    for row in rows:
        row["episode_total_tokens"], row["episode_critical_path_tokens"] = total, critical
    return rows


def parallel_rows(
    root: ThreadText, prompt_ids: list[int], tokenizer: Any, identity: dict[str, Any]
) -> list[dict[str, Any]]:
    """Version-2 rows (no logprobs, versions or reward) of the episode whose root writes
    `root` after `prompt_ids`; `identity` holds episode_id, group_id, task, problem_id and
    problem (JSON). A tokenizer without the parallel tags as tokens raises ThreadTokenError."""
    ids = tag_token_ids(tokenizer, PARALLEL_TAGS)
    builder = _Builder(tokenizer, ids[THREAD_CLOSE], ids[CONCLUSION_OPEN])
    builder.thread(root, list(prompt_ids), parent_id=-1, depth=0, spawn_index=-1, thread_id=builder.new_id())
    rows = [{**identity, **row} for row in sorted(builder.rows, key=lambda r: r["thread_id"])]
    return set_episode_metrics(rows)


class _Builder:
    def __init__(self, tokenizer: Any, thread_close_id: int, conclusion_open_id: int):
        self.tokenizer = tokenizer
        self.thread_close_id = thread_close_id
        self.conclusion_open_id = conclusion_open_id
        self.rows: list[dict[str, Any]] = []
        self.num_ids = 0

    def new_id(self) -> int:
        self.num_ids += 1
        return self.num_ids - 1

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]

    def thread(
        self, text: ThreadText, prompt_ids: list[int], parent_id: int, depth: int, spawn_index: int, thread_id: int
    ) -> list[int]:
        """Add the rows of `text` and its branches; return its output ids."""
        output: list[int] = []
        trainable: list[bool] = []
        pending = ""  # generated text not yet tokenized: one segment ends at each </parallel>
        num_blocks = 0
        for part in text.parts:
            if isinstance(part, str):
                pending += part
                continue
            segment = self.encode(pending + render_block(part.goals))
            output += segment
            trainable += [True] * len(segment)
            pending = ""
            context = prompt_ids + output
            headers = [self.encode(branch_prompt_suffix(goal)) for goal in part.goals]
            branch_ids = [self.new_id() for _ in part.goals]
            join: list[int] = []
            for header, branch, branch_id in zip(headers, part.branches, branch_ids):
                # The branch's output is its body and the </thread> that ends it, as the join shows it.
                branch_output = self.thread(branch, context + header, thread_id, depth + 1, num_blocks, branch_id)
                join += header + branch_output
            join.append(self.conclusion_open_id)
            output += join
            trainable += [False] * len(join)
            num_blocks += 1
        last = self.encode(pending) + [self.tokenizer.eos_token_id if parent_id < 0 else self.thread_close_id]
        output += last
        trainable += [True] * len(last)
        self.rows.append(
            {
                "thread_id": thread_id,
                "parent_id": parent_id,
                "spawn_index": spawn_index,
                "depth": depth,
                "role": "root" if parent_id < 0 else "child",
                "token_ids": prompt_ids + output,
                "num_prompt_tokens": len(prompt_ids),
                "trainable": [False] * len(prompt_ids) + trainable,
            }
        )
        return output
