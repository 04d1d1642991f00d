"""Trace episodes as token rows of the episode table (reasoning/episode_table.py).

SoS+ and APR: a thread's sequence is <bos> + prompt + output + <eos>. Segments are
tokenized one at a time, which equals tokenizing the whole text because segments meet
only at markup tags (single tokens); `tests/reasoning/test_countdown_traces.py` checks it.
Parallel blocks: the rows the parallel controller records (reasoning/trace_rows.py), the
root's prompt being <bos> + the problem line as the task's raw prompt.
"""
from __future__ import annotations

import dataclasses
import json
import random
from typing import Any, Iterable

from reasoning.countdown.config import TraceConfig
from reasoning.countdown.parallel_traces import parallel_trace, prompt_text
from reasoning.countdown.problems import Problem
from reasoning.countdown.traces import TraceEpisode, apr_trace, sos_trace
from reasoning.trace_rows import TraceSetStats, parallel_rows, set_episode_metrics

__all__ = ["TraceSetStats", "episode_rows", "identity", "trace_rows"]


def episode_rows(episode: TraceEpisode, tokenizer: Any) -> list[dict[str, Any]]:
    """Version-2 rows of the episode table (SFT data: no logprobs, versions or reward)."""
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
                **identity(episode.problem, episode.kind),
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
    return set_episode_metrics(rows)


def identity(problem: Problem, kind: str) -> dict[str, Any]:
    """The row columns that name the episode of `problem`'s trace of `kind`."""
    episode_id = f"{problem.id}/{kind}"
    return {
        "episode_id": episode_id,
        "group_id": episode_id,
        "task": "countdown",
        "problem_id": problem.id,
        "problem": json.dumps(dataclasses.asdict(problem), sort_keys=True),
    }


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
        rows_, solved = _episode(problem, config, rng, tokenizer, count_tokens)
        if not solved:
            stats.num_failed += 1
            if not config.include_failed:
                continue
        if max(len(row["token_ids"]) for row in rows_) > config.max_tokens:
            stats.num_too_long += 1
            continue
        rows += rows_
        stats.add(rows_)
    return rows, stats


def _episode(
    problem: Problem, config: TraceConfig, rng: random.Random, tokenizer: Any, count_tokens
) -> tuple[list[dict], bool]:
    """The rows of `problem`'s trace of kind `config.kind`, and whether its search succeeded."""
    if config.kind == "sos":
        episode = sos_trace(problem, rng, config.beam, count_tokens)
        return episode_rows(episode, tokenizer), episode.solution is not None
    sub_calls = rng.randint(config.sub_calls_min, config.sub_calls_max)
    if config.kind == "apr":
        episode = apr_trace(problem, rng, sub_calls, config.max_depth, config.beam)
        return episode_rows(episode, tokenizer), episode.solution is not None
    assert config.kind == "parallel", config.kind
    trace = parallel_trace(problem, rng, sub_calls, config.max_depth, config.beam)
    prompt_ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt_text(problem))]
    return parallel_rows(trace.root, prompt_ids, tokenizer, identity(problem, "parallel")), trace.solution is not None
