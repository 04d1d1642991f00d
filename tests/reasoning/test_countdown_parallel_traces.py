"""Countdown parallel-block traces: every line of every thread checks by the verifier's rules.

Over a thousand 3-number problems and sixty 4-number ones (nested blocks), for each
thread at its node of the search: each goal is an allowed step from the node's numbers
(reward/trace_steps.check_step), each search line of a branch follows from the state one
number larger, each `<answer>` is a whole path from the problem's numbers to the target
(verify_countdown), each conclusion copies the first path its block found (or says `Fail`
and, unless the steps are spent, the next block follows), and the root's decoded output
(joins included) scores correct.
"""
from __future__ import annotations

import random

import pytest

from reasoning.countdown.config import CountdownConfig
from reasoning.countdown.parallel_traces import parallel_trace, prompt_text
from reasoning.countdown.problems import Problem, generate_problems
from reasoning.countdown.search import candidate_steps
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.countdown.trace_tokens import identity
from reasoning.trace_rows import ThreadText, parallel_rows
from reward import Reason, verify_countdown
from reward.trace_steps import Step, check_step, parse_step, render_step

CD3 = CountdownConfig(numbers=3, max_number=30, target_min=10, target_max=50, num_train=1000, num_val=0, seed=11)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return generate_problems(CD3)[0]


def answer_path(text: str) -> list[Step]:
    """The steps inside the `<answer>` that `text` holds once."""
    assert text.count("<answer>") == 1 == text.count("</answer>"), text
    body = text[text.index("<answer>") + len("<answer>") : text.index("</answer>")]
    return [parse_step(line) for line in body.split("\n")]


def check_answer(problem: Problem, text: str, path: list[Step]) -> list[Step]:
    """The answer in `text`: a correct whole path that goes through the thread's node `path`."""
    verdict = verify_countdown(problem.numbers, problem.target, text)
    assert verdict.reason is Reason.CORRECT, (text, verdict)
    found = answer_path(text)
    assert found[: len(path)] == path
    return found


def check_search_lines(lines: list[str], numbers: tuple[int, ...]) -> None:
    """Each SoS+ line is an allowed step from the most recent state one number larger."""
    states = {len(numbers): numbers}
    for line in lines:
        step = parse_step(line)
        check_step(states[len(step.left) + 1], step)
        states[len(step.left)] = step.left


def check_thread(problem, thread: ThreadText, numbers, path, depth, k, max_depth) -> list[Step] | None:
    """Check every line `thread` writes at the node (numbers, path); the path it reports, if any."""
    blocks = thread.blocks()
    if not blocks:  # a sequential search: lines, then its path or Fail
        (text,) = thread.parts
        if text.endswith("Fail"):
            check_search_lines(text.split("\n")[:-1], numbers)
            return None
        lines = text[: text.index("<answer>")].split("\n")
        assert lines[-1] == ""
        check_search_lines(lines[:-1], numbers)
        return check_answer(problem, text[text.index("<answer>") :], path)
    assert depth < max_depth and len(numbers) > 2
    # The root states its budget; then each block is followed by its conclusion.
    offset = 1 if depth == 0 else 0
    assert thread.parts[:offset] == [f"Sub Call Budget {k}\n"][:offset]
    assert thread.parts[offset::2] == blocks
    conclusions = thread.parts[offset + 1 :: 2]
    assert len(conclusions) == len(blocks) and all(isinstance(c, str) for c in conclusions)
    # The goals are the node's distinct steps, most promising first, k per block.
    goals = [goal for block in blocks for goal in block.goals]
    assert all(len(block.goals) <= k for block in blocks) and len(set(goals)) == len(goals)
    reported = None
    for block, conclusion in zip(blocks, conclusions):
        results = []
        for goal, branch in zip(block.goals, block.branches):
            step = parse_step(goal)
            check_step(numbers, step)
            results.append(check_thread(problem, branch, step.left, path + [step], depth + 1, k, max_depth))
        first = next((r for r in results if r is not None), None)
        if first is None:
            assert conclusion == "Fail</conclusion>"
            continue
        assert conclusion.endswith("</conclusion>") and block is blocks[-1]
        reported = check_answer(problem, conclusion, path)
        assert reported == first
    if reported is None:  # every step of the node was tried
        assert set(goals) == {render_step(step) for step in candidate_steps(numbers)}
    return reported


@pytest.mark.parametrize("max_depth", [1, 2])
def test_every_line_of_every_thread_checks(problems, max_depth):
    four = generate_problems(CountdownConfig(num_train=60, num_val=0, seed=3))[0]
    num_blocks = num_nested = 0
    for problem in problems + four:
        k = random.Random(problem.id).randint(2, 4)
        trace = parallel_trace(problem, random.Random(problem.id), k, max_depth)
        found = check_thread(problem, trace.root, problem.numbers, [], 0, k, max_depth)
        assert found is not None and found == trace.solution  # every generated problem is solvable
        num_blocks += len(trace.root.blocks())
        num_nested += any(branch.blocks() for block in trace.root.blocks() for branch in block.branches)
    assert num_blocks > len(problems) + len(four)  # some roots needed a second block
    assert (num_nested > 0) == (max_depth == 2)


def test_the_root_output_as_trained_scores_correct(problems):
    tokenizer = build_tokenizer()
    for problem in problems[:200]:
        trace = parallel_trace(problem, random.Random(problem.id), 3, 2)
        prompt = [tokenizer.bos_token_id, *tokenizer.encode(prompt_text(problem))]
        root = parallel_rows(trace.root, prompt, tokenizer, identity(problem, "parallel"))[0]
        output = tokenizer.decode(root["token_ids"][root["num_prompt_tokens"] :], skip_special_tokens=True)
        assert verify_countdown(problem.numbers, problem.target, output).reason is Reason.CORRECT
        assert output.endswith("</answer></conclusion>")  # the conclusion's answer is the last one


def test_equal_numbers_give_one_goal():
    trace = parallel_trace(Problem("p", (5, 5, 3), 13), random.Random(0), sub_calls=16, max_depth=1)
    (block,) = trace.root.blocks()
    assert len(block.goals) == len(set(block.goals)) and "5+3=8|5 8" in block.goals
