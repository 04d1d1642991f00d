"""Multi-path modes on scripted paths, and the judge's AUROC, worked by hand."""
from __future__ import annotations

import asyncio

import pytest

from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.multipath.config import MultiPathConfig
from reasoning.multipath.judges import auroc, jaccard, ngram_similarity, ngrams
from reasoning.multipath.runner import MultiPathRunner
from reasoning.tasks import make_task
from rollout.engine import Completion, FinishReason, SamplingParams

PROBLEM = Problem("p", (3, 12, 19), 34)
RIGHT = "19+3=22|12 22\n22+12=34|34\n<answer>19+3=22|12 22\n22+12=34|34</answer>"
BAD = "12*3=36|19 36\n36-19=17|17\n<answer>12*3=36|19 36\n36-19=34|34</answer>"  # a wrong step


class PathEngine:
    """Path i of every problem writes texts[i] (with logprob logprobs[i] per token), a chunk at a time."""

    def __init__(self, tokenizer, texts: list[str], logprobs: list[float] | None = None):
        self.tokenizer = tokenizer
        self.paths = [tokenizer.encode(t) + [tokenizer.eos_token_id] for t in texts]
        self.logprobs = logprobs or [-0.1] * len(texts)
        self.prompt_len: int | None = None
        self.generated = 0

    async def generate(self, prompt_ids, sampling: SamplingParams, request_id=None) -> Completion:
        path = int(request_id.split("/")[1])
        if self.prompt_len is None:
            self.prompt_len = len(prompt_ids)
        done = len(prompt_ids) - self.prompt_len
        ids = self.paths[path][done : done + sampling.max_tokens]
        reason = FinishReason.STOP_TOKEN if ids and ids[-1] == self.tokenizer.eos_token_id else FinishReason.LENGTH
        self.generated += len(ids)
        await asyncio.sleep(0)
        return Completion(request_id, list(prompt_ids), ids, [self.logprobs[path]] * len(ids), [0] * len(ids), reason)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def run(tokenizer, texts, mode, logprobs=None, **config):
    engine = PathEngine(tokenizer, texts, logprobs)
    runner = MultiPathRunner(engine, tokenizer, make_task("countdown"), MultiPathConfig(k=len(texts), chunk_tokens=4, **config), max_tokens=200)
    episode = asyncio.run(runner.run(PROBLEM, mode))
    return episode, engine, runner


def test_vote_takes_the_majority_and_counts_every_token(tokenizer):
    episode, engine, runner = run(tokenizer, [BAD, BAD, RIGHT, RIGHT, RIGHT], "vote")
    assert episode.output == RIGHT and episode.verdict.is_correct
    assert episode.total_tokens == engine.generated == sum(len(tokenizer.encode(t)) + 1 for t in [BAD] * 2 + [RIGHT] * 3)
    assert episode.critical_path_tokens == max(len(tokenizer.encode(t)) + 1 for t in (BAD, RIGHT))
    assert runner.pass_at_k(episode)


def test_short_m_votes_among_the_first_m_and_stops_the_rest(tokenizer):
    short_bad = "<answer>12*3=36|19 36\n36-19=34|34</answer>"
    episode, engine, _ = run(tokenizer, [RIGHT, RIGHT, RIGHT, short_bad, short_bad], "short-m@k", short_m=2)
    assert not episode.verdict.is_correct  # the two quick wrong paths outvote nothing else
    assert sorted(t.finish_reason for t in episode.threads) == ["short_m"] * 3 + ["stop_token"] * 2
    assert engine.generated < 3 * (len(tokenizer.encode(RIGHT)) + 1)


def test_prune_stops_redundant_paths_and_weights_clusters(tokenizer):
    episode, engine, _ = run(tokenizer, [RIGHT, RIGHT, RIGHT, BAD], "prune", prune_min_tokens=8, prune_threshold=0.5)
    reasons = [t.finish_reason for t in episode.threads]
    assert reasons == ["stop_token", "pruned", "pruned", "stop_token"]
    assert episode.output == RIGHT  # the cluster of three outvotes the lone path
    full = 3 * (len(tokenizer.encode(RIGHT)) + 1) + len(tokenizer.encode(BAD)) + 1
    assert engine.generated < full


def test_confidence_stops_paths_below_the_warmup_threshold(tokenizer):
    long_text = RIGHT.replace("\n<answer>", "\n" + "19+3=22|12 22\n" * 6 + "<answer>")
    texts = ["<answer>19+3+12</answer>", "<answer>19+12+3</answer>", long_text, long_text]
    episode, _, _ = run(tokenizer, texts, "confidence", logprobs=[-0.1, -0.1, -3.0, -3.0], confidence_window=4, confidence_warmup=2)
    reasons = [t.finish_reason for t in episode.threads]
    assert reasons[:2] == ["stop_token", "stop_token"] and reasons[2:] == ["low_confidence", "low_confidence"]
    assert episode.verdict.is_correct


def test_ngram_judge_by_hand():
    assert ngrams([1, 2, 3, 4], 2) == {(1, 2), (2, 3), (3, 4)}
    # {12, 23, 34} vs {12, 23, 35}: 2 shared of 4 -> 0.5
    assert ngram_similarity([1, 2, 3, 4], [1, 2, 3, 5], 2) == 0.5
    assert jaccard(set(), set()) == 1.0


def test_auroc_by_hand():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    # positives 0.5, 0.9 against negatives 0.5, 0.1: pairs (0.5 v 0.5 tie = 0.5) + 1 + 1 + 1 = 3.5 of 4
    assert auroc([0.5, 0.9, 0.5, 0.1], [True, True, False, False]) == 0.875
    assert auroc([0.3], [True]) is None
