"""SFT traces: every claimed success verifies, APR trees are consistent, tokens are right."""
from __future__ import annotations

import random

import pytest

from reasoning.countdown.config import CountdownConfig, TraceConfig
from reasoning.countdown.problems import Problem, generate_problems
from reasoning.countdown.search import candidate_steps, ordered_steps
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.countdown.trace_tokens import episode_rows, trace_rows
from reasoning.countdown.traces import BUDGET_BINS, apr_trace, check_child_prompts, sos_trace
from reasoning.protocols.apr import child_result, parse_spawn
from reward import Reason, verify_countdown
from reward.trace_steps import check_step, parse_step

CD3 = CountdownConfig(numbers=3, max_number=30, target_min=10, target_max=50, num_train=1000, num_val=0, seed=11)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return generate_problems(CD3)[0]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_candidate_steps_follow_apr_rules():
    steps = candidate_steps((12, 4, 5))
    assert all(s.a >= s.b for s in steps)
    assert {f"{s.a}{s.op}{s.b}" for s in steps if {s.a, s.b} == {12, 4}} == {"12+4", "12*4", "12-4", "12/4"}
    assert not any(s.op == "/" and {s.a, s.b} == {12, 5} for s in steps)  # 12/5 is not exact


def test_ordering_puts_the_closest_first():
    steps = ordered_steps((3, 7), 21, random.Random(0))
    assert steps[0].result == 21


def replay(lines: list[str], numbers: tuple[int, ...]) -> None:
    """Every step line of a trace follows from the most recent state one number larger."""
    states = {len(numbers): list(numbers)}
    for line in lines:
        step = parse_step(line)
        check_step(states[len(step.left) + 1], step)
        states[len(step.left)] = list(step.left)


def test_over_1000_problems_every_sos_trace_verifies(problems):
    for problem in problems:
        episode = sos_trace(problem, random.Random(problem.id))
        (thread,) = episode.threads
        assert episode.solution is not None  # every generated problem is solvable
        verdict = verify_countdown(problem.numbers, problem.target, thread.output)
        assert verdict.reason is Reason.CORRECT, (problem, thread.output, verdict)
        body = thread.output.split("\n", 1)[1].split("<answer>")[0]
        replay([line for line in body.split("\n") if line], problem.numbers)


def test_budget_line_is_a_bin_that_holds_the_trace(problems, tokenizer):
    for problem in problems[:100]:
        thread = sos_trace(problem, random.Random(0), count_tokens=lambda t: len(tokenizer.encode(t))).threads[0]
        budget = int(thread.output.split("\n", 1)[0].removeprefix("Token Budget "))
        assert budget in BUDGET_BINS and len(tokenizer.encode(thread.output)) < budget


@pytest.mark.parametrize("max_depth", [1, 2])
def test_over_1000_problems_every_apr_tree_is_consistent(problems, max_depth):
    four = generate_problems(CountdownConfig(num_train=60, num_val=0, seed=3))[0]
    for problem in problems + four:
        episode = apr_trace(problem, random.Random(problem.id), sub_calls=3, max_depth=max_depth)
        check_child_prompts(episode)
        root = episode.threads[0]
        verdict = verify_countdown(problem.numbers, problem.target, root.output)
        assert verdict.reason is Reason.CORRECT, (problem, root.output)
        assert max(t.depth for t in episode.threads) <= max_depth
        for thread in episode.threads:
            children = [t for t in episode.threads if t.parent_id == thread.thread_id]
            _check_spawns_and_joins(thread, children)
            result = child_result(thread.output)
            if result is not None:  # a thread's answer is a full, correct path from the root
                assert verify_countdown(problem.numbers, problem.target, thread.output).reason is Reason.CORRECT


def _check_spawns_and_joins(thread, children) -> None:
    """Each spawn lists the next children in order, and its join holds exactly their results."""
    segments = thread.segments
    spawned = []
    for i, (text, trained) in enumerate(segments):
        if text.startswith("<spawn>"):
            assert trained
            batch = parse_spawn(text, max_children=16)
            join_text, join_trained = segments[i + 1]
            assert join_text.startswith("<join>") and not join_trained  # observed, not trained
            mine = children[len(spawned) : len(spawned) + len(batch)]
            spawned += batch
            for child_text, child in zip(batch, mine):
                assert child.prompt.endswith(child_text + "\n")
                result = child_result(child.output)
                assert (f"<thread>{result}</thread>" if result else "<thread>Fail</thread>") in join_text
    assert len(spawned) == len(children)


def test_rows_tokenize_like_the_whole_text(problems, tokenizer):
    episode = apr_trace(problems[0], random.Random(1), sub_calls=2, max_depth=2)
    for thread, row in zip(episode.threads, episode_rows(episode, tokenizer)):
        whole = [tokenizer.bos_token_id, *tokenizer.encode(thread.prompt + thread.output), tokenizer.eos_token_id]
        assert row["token_ids"] == whole
        assert row["num_prompt_tokens"] == 1 + len(tokenizer.encode(thread.prompt))
        assert not any(row["trainable"][: row["num_prompt_tokens"]]) and row["trainable"][-1]
        trained = tokenizer.decode([t for t, m in zip(row["token_ids"], row["trainable"]) if m])
        assert "<join>" not in trained and "Fail</thread>" not in trained


def test_trace_rows_counts_and_filters(problems, tokenizer):
    rows, stats = trace_rows(problems[:50], TraceConfig(kind="sos"), tokenizer)
    assert (stats.num_problems, stats.num_episodes, stats.num_threads) == (50, 50, 50) and len(rows) == 50
    rows, stats = trace_rows(problems[:50], TraceConfig(kind="sos", max_tokens=40), tokenizer)
    assert stats.num_too_long + stats.num_episodes == 50 and all(len(r["token_ids"]) <= 40 for r in rows)
    rows, stats = trace_rows(problems[:50], TraceConfig(kind="apr", sub_calls_min=2, sub_calls_max=4), tokenizer)
    assert stats.num_threads > stats.num_episodes == 50
    assert {r["role"] for r in rows} == {"root", "child"}
