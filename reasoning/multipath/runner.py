"""k sampled paths of one problem, grown chunk by chunk, voted on, and cut early by mode.

Modes (all sample the same paths for the same seed, so they differ only in what they cut):
- `vote`: every path runs to the end; majority vote over the final answers (cons@k).
- `short-m@k`: once the first m paths finish, the rest stop; vote among those m.
- `prune` (DeepPrune-style): online greedy clustering. Once a path has `prune_min_tokens`
  tokens it is compared (reasoning/multipath/judges.py) with the representative of every
  cluster, cut to the same length; if similar enough it joins that cluster and stops,
  otherwise it founds a new cluster. A cluster votes with its size and its
  representative's answer.
- `confidence` (DeepConf-online): the first `confidence_warmup` paths to finish set a
  threshold (a percentile of their lowest windowed mean token logprob); any later path
  whose current window falls below it stops. Kept paths vote weighted by their mean token
  probability.

Paths grow `chunk_tokens` at a time, each chunk one engine request whose prompt is the
path so far (the paged engine's prefix cache makes that cheap). Cutting happens between
rounds, so a stopped path is never extended: the tokens saved are never generated.
The result is an Episode whose threads are the k paths (all roots: the critical path is
the longest path) and whose output is the path that carried the winning answer.
"""
from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasoning.episode import Episode, Thread
from reasoning.multipath.config import MultiPathConfig
from reasoning.multipath.judges import ngram_similarity
from reasoning.tasks.base import Task
from reward import Reason, Verdict
from rollout.engine import Engine, FinishReason, SamplingParams

MODES = ("vote", "short-m@k", "prune", "confidence")


@dataclass
class _Path:
    thread: Thread
    done: bool = False
    stopped: str = ""  # why it was cut: "short_m", "pruned", "low_confidence"
    cluster: int = -1  # prune: index of its cluster's representative path
    output: str = ""


class MultiPathRunner:
    def __init__(self, engine: Engine, tokenizer: Any, task: Task, config: MultiPathConfig, max_tokens: int):
        self.engine = engine
        self.tokenizer = tokenizer
        self.task = task
        self.config = config
        self.max_tokens = max_tokens

    async def run(self, problem: Any, mode: str, episode_id: str | None = None) -> Episode:
        assert mode in MODES, mode
        episode_id = episode_id or problem.id
        start = time.perf_counter()
        prompt = self.task.prompt_ids(problem, self.tokenizer)
        paths = [_Path(Thread(i, -1, 0, -1, list(prompt))) for i in range(self.config.k)]
        finished: list[int] = []
        threshold: float | None = None
        for round_index in range(10**9):
            active = [i for i, p in enumerate(paths) if not p.done and not p.stopped]
            if not active:
                break
            await asyncio.gather(*(self._grow(paths[i], episode_id, round_index) for i in active))
            finished += [i for i in active if paths[i].done]
            if mode == "short-m@k" and len(finished) >= self.config.short_m:
                for p in paths:
                    if not p.done:
                        p.stopped = "short_m"
            elif mode == "prune":
                self._prune(paths, active)
            elif mode == "confidence":
                threshold = self._confidence_cut(paths, finished, threshold)
        voters = finished[: self.config.short_m] if mode == "short-m@k" else finished
        output = self._vote(paths, voters, mode)
        verdict = (
            await asyncio.to_thread(self.task.score, problem, output)
            if output is not None
            else Verdict.fail(Reason.NO_ANSWER, "no path finished with an answer")
        )
        for p in paths:
            p.thread.finish_reason = p.thread.finish_reason if p.done else p.stopped
        return Episode(episode_id, problem, mode, [p.thread for p in paths], output or "", verdict,
                       time.perf_counter() - start, self.task.name)  # fmt: skip

    def pass_at_k(self, episode: Episode) -> bool:
        """Whether any finished path's own output is correct."""
        return any(
            self.task.score(episode.problem, self.tokenizer.decode(t.output_ids, skip_special_tokens=True)).is_correct
            for t in episode.threads
        )

    async def _grow(self, path: _Path, episode_id: str, round_index: int) -> None:
        thread = path.thread
        room = min(self.config.chunk_tokens, self.max_tokens - thread.num_generated)
        seed = zlib.crc32(f"{self.config.seed}/{episode_id}/{thread.thread_id}/{round_index}".encode())
        sampling = SamplingParams(max_tokens=room, temperature=self.config.temperature, seed=seed)
        completion = await self.engine.generate(
            thread.prompt_ids + thread.output_ids, sampling, request_id=f"{episode_id}/{thread.thread_id}/{round_index}"
        )
        thread.add_generated(completion.token_ids, completion.logprobs, completion.versions)
        ended = completion.finish_reason is not FinishReason.LENGTH or thread.num_generated >= self.max_tokens
        if ended:
            path.done = True
            thread.finish_reason = completion.finish_reason.value
            path.output = self.tokenizer.decode(thread.output_ids, skip_special_tokens=True)

    def _prune(self, paths: list[_Path], active: list[int]) -> None:
        config = self.config
        for i in active:
            path = paths[i]
            tokens = path.thread.output_ids
            if path.cluster >= 0:
                continue
            if path.done:  # finished before being judged: it stands for itself
                path.cluster = i
                continue
            if len(tokens) < config.prune_min_tokens:
                continue
            for j, other in enumerate(paths):
                if other.cluster != j:  # only cluster representatives
                    continue
                theirs = other.thread.output_ids[: len(tokens)]
                if ngram_similarity(tokens[: len(theirs)], theirs, config.prune_ngram) >= config.prune_threshold:
                    path.cluster, path.stopped = j, "pruned"
                    break
            else:
                path.cluster = i

    def _confidence_cut(self, paths: list[_Path], finished: list[int], threshold: float | None) -> float | None:
        config = self.config
        if threshold is None and len(finished) >= config.confidence_warmup:
            lowest = [_lowest_window(paths[i].thread.logprobs, config.confidence_window) for i in finished[: config.confidence_warmup]]
            threshold = float(np.percentile(lowest, config.confidence_percentile))
        if threshold is not None:
            for p in paths:
                logprobs = p.thread.logprobs
                if not p.done and not p.stopped and len(logprobs) >= config.confidence_window:
                    if float(np.mean(logprobs[-config.confidence_window :])) < threshold:
                        p.stopped = "low_confidence"
        return threshold

    def _vote(self, paths: list[_Path], voters: list[int], mode: str) -> str | None:
        weights: dict[str, float] = {}
        carrier: dict[str, str] = {}
        for i in voters:
            path = paths[i]
            answer = self.task.final_answer(path.output)
            if answer is None:
                continue
            if mode == "prune":
                weight = float(sum(1 for p in paths if p.cluster == i)) or 1.0
            elif mode == "confidence":
                weight = float(np.exp(np.mean(path.thread.logprobs))) if path.thread.logprobs else 0.0
            else:
                weight = 1.0
            weights[answer] = weights.get(answer, 0.0) + weight
            carrier.setdefault(answer, path.output)
        if not weights:
            return None
        best = max(weights, key=lambda a: weights[a])  # ties: the first to finish
        return carrier[best]


def _lowest_window(logprobs: list[float], window: int) -> float:
    if len(logprobs) <= window:
        return float(np.mean(logprobs)) if logprobs else 0.0
    values = np.convolve(np.asarray(logprobs), np.ones(window) / window, mode="valid")
    return float(values.min())

