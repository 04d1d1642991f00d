"""The APR controller with a scripted engine: joins, metrics, and hostile output bounded."""
from __future__ import annotations

import asyncio
import time

import pytest

from reasoning.controllers.apr import AprController
from reasoning.controllers.limits import ThreadLimits
from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.tasks import make_task
from reward import Reason
from rollout.engine import SamplingParams
from tests.scripted_engine import ScriptedEngine

PROBLEM = Problem("p", (3, 12, 19), 34)
GREEDY = SamplingParams(max_tokens=256, temperature=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def run(tokenizer, respond, limits=ThreadLimits(), delay_s=0.0, sampling=GREEDY):
    engine = ScriptedEngine(tokenizer, respond, delay_s)
    episode = asyncio.run(AprController(engine, tokenizer, make_task("countdown"), sampling, limits).run(PROBLEM))
    return episode, engine


def well_behaved(context: str) -> str:
    lines = context.split("\n")
    if len(lines) == 3 and lines[1]:  # a child: problem line, its step, then nothing yet
        step = lines[1]
        if step.startswith("19+3"):
            return "22+12=34|34\n<answer>19+3=22|12 22\n22+12=34|34</answer>"
        return "36-19=17|17\nFail"
    if "<join>" not in context:
        return "Sub Call Budget 2\n<spawn><thread>12*3=36|19 36</thread><thread>19+3=22|12 22</thread></spawn>"
    return "\n<answer>19+3=22|12 22\n22+12=34|34</answer>"


def test_spawn_join_and_answer(tokenizer):
    episode, engine = run(tokenizer, well_behaved)
    assert episode.verdict.reason is Reason.CORRECT
    assert [t.parent_id for t in episode.threads] == [-1, 0, 0]
    root = episode.root
    assert "<join><thread>Fail</thread><thread>19+3=22|12 22\n22+12=34|34</thread></join>" in episode.output
    # The join is observed, not trained; everything the root generated is trained.
    join_start = tokenizer.decode(root.output_ids).index("<join>")
    inserted = [t for t, m in zip(root.output_ids, root.trainable) if not m]
    assert tokenizer.decode(inserted).startswith("<join>") and join_start > 0
    assert all(v == -1 for v, m in zip(root.versions, root.trainable) if not m)
    # Children are prompted with the parent's prompt plus their own step.
    assert engine.calls[1] == "34|3 12 19\n12*3=36|19 36\n"


def test_critical_path_and_totals_by_hand(tokenizer):
    episode, _ = run(tokenizer, well_behaved)
    root, slow, fast = episode.threads
    assert root.num_spawns == 1 and slow.spawn_index == fast.spawn_index == 0
    # Critical path: the root's own tokens + the longer child; total: everything generated.
    assert episode.critical_path_tokens == root.num_generated + max(slow.num_generated, fast.num_generated)
    assert episode.total_tokens == root.num_generated + slow.num_generated + fast.num_generated
    assert episode.depth == 1 and episode.num_threads == 3


@pytest.mark.parametrize(
    "respond",
    [
        lambda c: "<spawn><thread>1+1=2|2</spawn>",  # unbalanced
        lambda c: "</spawn>",  # close without open
        lambda c: "<spawn>" + "<thread>1+1=2|2</thread>" * 1000 + "</spawn>",  # 1,000 children
    ],
)
def test_malformed_spawns_end_the_root_with_zero_reward(tokenizer, respond):
    long = SamplingParams(max_tokens=20_000, temperature=0.0)
    episode, _ = run(tokenizer, respond, ThreadLimits(max_thread_tokens=20_000, max_total_tokens=20_000), sampling=long)
    assert episode.root.finish_reason == "bad_markup"
    assert episode.verdict.reward == 0.0 and len(episode.threads) == 1


def test_unbounded_nesting_stops_at_max_depth(tokenizer):
    episode, _ = run(tokenizer, lambda c: "<spawn><thread>1+1=2|2</thread></spawn>", ThreadLimits(max_depth=3))
    assert episode.depth == 3
    deepest = [t for t in episode.threads if t.depth == 3]
    assert deepest and all(t.finish_reason == "too_deep" for t in deepest)
    assert episode.verdict.reward == 0.0


def test_too_many_threads(tokenizer):
    spawn4 = "<spawn>" + "<thread>1+1=2|2</thread>" * 4 + "</spawn>"
    episode, _ = run(tokenizer, lambda c: spawn4, ThreadLimits(max_children=8, max_depth=5, max_threads=10))
    assert len(episode.threads) <= 10
    assert any(t.finish_reason == "too_many_threads" for t in episode.threads)


def test_a_child_that_never_stops_is_cut_by_its_token_limit(tokenizer):
    def respond(context):
        if context.count("\n") >= 2:
            return "1+1=2|2\n" * 10_000  # runaway child
        return "<spawn><thread>3+12=15|19 15</thread></spawn>" if "<join>" not in context else "\nFail"

    episode, _ = run(tokenizer, respond, ThreadLimits(max_thread_tokens=100, max_total_tokens=10_000))
    child = episode.threads[1]
    assert child.finish_reason == "length" and child.num_generated == 100
    assert "<thread>Fail</thread>" in episode.output


def test_the_episode_token_budget_is_shared(tokenizer):
    spawn = "<spawn>" + "<thread>1+1=2|2</thread>" * 3 + "</spawn>"
    episode, _ = run(
        tokenizer,
        lambda c: spawn if c.count("\n") < 2 else "9" * 500,
        ThreadLimits(max_thread_tokens=400, max_total_tokens=300),
    )
    assert episode.total_tokens <= 300  # running children reserve their room, so it is never overrun
    assert episode.verdict.reward == 0.0


def test_wall_clock_limit_aborts_in_flight_requests(tokenizer):
    start = time.perf_counter()
    episode, engine = run(tokenizer, lambda c: "<answer>1</answer>", ThreadLimits(max_wall_s=0.05), delay_s=5.0)
    assert time.perf_counter() - start < 2.0
    assert episode.root.finish_reason == "timeout" and engine.aborted == ["p/0/0"]
    assert episode.verdict.reward == 0.0


def test_text_after_end_of_sequence_is_ignored(tokenizer):
    episode, _ = run(tokenizer, lambda c: "<answer>19+3+12</answer><eos><answer>1</answer>")
    assert episode.verdict.reason is Reason.CORRECT


def test_reservations_do_not_starve_siblings(tokenizer):
    """Siblings that wait on reserved-but-unused budget run once it is given back."""

    def respond(context):
        if context.count("\n") >= 2:
            return "<answer>19+3=22|12 22\n22+12=34|34</answer>"  # ~20 tokens each
        if "<join>" not in context:
            return "<spawn>" + "<thread>19+3=22|12 22</thread>" * 4 + "</spawn>"
        return "\nFail"

    # Each child may write 256 tokens, so four reservations exceed the 600-token budget;
    # they use about 20 each, so every child must still run.
    episode, _ = run(tokenizer, respond, ThreadLimits(max_total_tokens=600))
    children = episode.threads[1:]
    assert len(children) == 4 and all(c.finish_reason == "stop_token" for c in children)
    assert episode.root.finish_reason == "stop_token" and episode.total_tokens < 600
