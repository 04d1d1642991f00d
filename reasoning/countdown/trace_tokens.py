"""Trace episodes as token rows of the episode table (reasoning/episode_table.py).

A thread's sequence is <bos> + prompt + output + <eos>. Segments are tokenized one at a
time, which equals tokenizing the whole text because segments meet only at markup tags
(single tokens); `tests/reasoning/test_countdown_traces.py` checks it.
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from typing import Any, Iterable

from reasoning.countdown.config import TraceConfig
from reasoning.countdown.problems import Problem
from reasoning.countdown.traces import TraceEpisode, apr_trace, sos_trace
from reasoning.episode import critical_path


def episode_rows(episode: TraceEpisode, tokenizer: Any) -> list[dict[str, Any]]:
    """Version-2 rows of the episode table (SFT data: no logprobs, versions or reward)."""
    problem = episode.problem
    episode_id = f"{problem.id}/{episode.kind}"
    rows = []
    for thread in episode.threads:
        prompt_ids = [tokenizer.bos_token_id, *tokenizer.encode(thread.prompt)]
        token_ids, trainable = list(prompt_ids), [False] * len(prompt_ids)
        for text, is_trained in thread.segments:
            ids = tokenizer.encode(text)
            token_ids += ids
            trainable += [is_trained] * len(ids)
        token_ids.append(tokenizer.eos_token_id)
        trainable.append(True)
        rows.append(
            {
                "episode_id": episode_id,
                "group_id": episode_id,
                "task": "countdown",
                "problem_id": problem.id,
                "problem": json.dumps(dataclasses.asdict(problem), sort_keys=True),
                "thread_id": thread.thread_id,
                "parent_id": thread.parent_id,
                "spawn_index": thread.spawn_index,
                "depth": thread.depth,
                "role": "root" if thread.parent_id < 0 else "child",
                "token_ids": token_ids,
                "num_prompt_tokens": len(prompt_ids),
                "trainable": trainable,
            }
        )
    tree = [(r["thread_id"], r["parent_id"], r["spawn_index"], sum(r["trainable"])) for r in rows]
    total, critical = sum(n for *_, n in tree), critical_path(tree)
    for row in rows:
        row["episode_total_tokens"], row["episode_critical_path_tokens"] = total, critical
    return rows


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


def trace_rows(
    problems: Iterable[Problem], config: TraceConfig, tokenizer: Any
) -> tuple[list[dict[str, Any]], TraceSetStats]:
    """Token rows of the traces of `problems`, and what was kept and left out."""
    rng = random.Random(config.seed)
    count_tokens = lambda text: len(tokenizer.encode(text))  # noqa: E731
    rows: list[dict[str, Any]] = []
    stats = TraceSetStats()
    for problem in problems:
        stats.num_problems += 1
        if config.kind == "sos":
            episode = sos_trace(problem, rng, config.beam, count_tokens)
        else:
            sub_calls = rng.randint(config.sub_calls_min, config.sub_calls_max)
            episode = apr_trace(problem, rng, sub_calls, config.max_depth, config.beam)
        if episode.solution is None:
            stats.num_failed += 1
            if not config.include_failed:
                continue
        episode_rows_ = episode_rows(episode, tokenizer)
        if max(len(row["token_ids"]) for row in episode_rows_) > config.max_tokens:
            stats.num_too_long += 1
            continue
        rows += episode_rows_
        stats.num_episodes += 1
        stats.num_threads += len(episode_rows_)
        stats.num_tokens += sum(len(row["token_ids"]) for row in episode_rows_)
    return rows, stats
