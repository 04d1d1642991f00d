"""Parallel-block trace rows (reasoning/trace_rows.py) are what the parallel controller records.

Replays: a scripted engine answers every request of the real ParallelController with the
trace's own next generated segment, and the controller's episode rows must equal the
trace's rows token for token (prompts, outputs, trained flags, tree, critical path), for
Countdown search traces (nested blocks, failed blocks followed by the next block) and
wordmath worked solutions (chat prompts, a BPE tokenizer), and score correct. Token counts
in comments use the Countdown tokenizer: a tag, a number below 1,000, a keyword and any
other character are one token each.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.parallel import ParallelController
from reasoning.countdown.config import CountdownConfig, TraceConfig
from reasoning.countdown.parallel_traces import parallel_trace, prompt_text
from reasoning.countdown.problems import Problem, generate_problems
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.countdown.trace_tokens import identity, trace_rows
from reasoning.markup import ThreadTokenError
from reasoning.protocols.parallel import render_join
from reasoning.tasks import TaskConfig, make_task, problem_json
from reasoning.trace_rows import Block, ThreadText, parallel_rows
from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.parallel_traces import read_solution, solution_thread
from reasoning.wordmath.rows import math_problem
from reward import Reason
from rollout.engine import SamplingParams
from tests.hf_models import bpe_tokenizer
from tests.scripted_engine import ScriptedEngine

PROBLEM = Problem("p", (3, 12, 19), 34)
CD3 = CountdownConfig(numbers=3, max_number=30, target_min=10, target_max=50, num_train=30, num_val=0)
IDENTITY = identity(PROBLEM, "parallel")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def trained_text(tokenizer, row) -> list[str]:
    """The row's output as runs of text, observed runs in brackets."""
    runs: list[str] = []
    ids, flags = row["token_ids"][row["num_prompt_tokens"] :], row["trainable"][row["num_prompt_tokens"] :]
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or flags[i] != flags[start]:
            text = tokenizer.decode(ids[start:i])
            runs.append(text if flags[start] else f"[{text}]")
            start = i
    return runs


def test_rows_by_hand(tokenizer):
    # The root forks twice (the first block fails); its second branch forks again.
    root = ThreadText([
        "Go\n",
        Block(["a"], [ThreadText(["1\nFail"])]),
        "Fail</conclusion>",
        Block(["b", "c"], [ThreadText(["2"]), ThreadText([Block(["d"], [ThreadText(["3"])]), "x</conclusion>"])]),
        "y</conclusion>",
    ])  # fmt: skip
    prompt = [tokenizer.bos_token_id, *tokenizer.encode("34|3 12 19\n")]
    rows = parallel_rows(root, prompt, tokenizer, IDENTITY)
    assert [(r["thread_id"], r["parent_id"], r["spawn_index"], r["depth"]) for r in rows] == [
        (0, -1, -1, 0), (1, 0, 0, 1), (2, 0, 1, 1), (3, 0, 1, 1), (4, 3, 0, 2),
    ]  # fmt: skip
    assert trained_text(tokenizer, rows[0]) == [
        "Go\n<parallel><thread>a</thread></parallel>",
        "[<thread>a\n1\nFail</thread><conclusion>]",
        "Fail</conclusion><parallel><thread>b</thread><thread>c</thread></parallel>",
        "[<thread>b\n2</thread><thread>c\n<parallel><thread>d</thread></parallel><thread>d\n3</thread>"
        "<conclusion>x</conclusion></thread><conclusion>]",
        "y</conclusion><eos>",
    ]  # fmt: skip
    # A branch's prompt is the parent's whole context and its header; it ends with </thread>.
    context = rows[0]["token_ids"][: len(prompt) + 8]  # G o \n <parallel> <thread> a </thread> </parallel>
    assert rows[1]["token_ids"][: rows[1]["num_prompt_tokens"]] == context + tokenizer.encode("<thread>a\n")
    assert trained_text(tokenizer, rows[1]) == ["1\nFail</thread>"]
    assert trained_text(tokenizer, rows[3])[1] == "[<thread>d\n3</thread><conclusion>]"
    # The join is render_join of the goals and the branches' bodies.
    join = trained_text(tokenizer, rows[0])[3][1:-1]
    nested = "<parallel><thread>d</thread></parallel><thread>d\n3</thread><conclusion>x</conclusion>"
    assert join == render_join(["b", "c"], ["2", nested])
    # Trained tokens: root "Go\n" 3 + outline 5 + "Fail</conclusion>" 2 + outline 8 + "y</conclusion><eos>" 3
    # = 21; a: 1 \n Fail </thread> = 4; b: 2 </thread> = 2; c: outline 5 + x </conclusion> </thread> 3 = 8;
    # d: 3 </thread> = 2.
    assert [sum(r["trainable"]) for r in rows] == [21, 4, 2, 8, 2]
    # Critical path: root 21 + block 0 (a: 4) + block 1 (max(b: 2, c: 8 + d: 2)) = 35; total 37.
    assert {(r["episode_total_tokens"], r["episode_critical_path_tokens"]) for r in rows} == {(37, 35)}


def test_a_tokenizer_without_the_tags_is_refused():
    with pytest.raises(ThreadTokenError, match="<parallel> encodes to [2-9] tokens"):
        parallel_rows(ThreadText(["x"]), [1], bpe_tokenizer(vocab_size=300), IDENTITY)


def replay_respond(rows, tokenizer):
    """A scripted engine's respond that continues each thread with its trace's next generated run."""
    runs = []
    for row in rows:
        ids, flags = row["token_ids"], row["trainable"]
        i = row["num_prompt_tokens"]
        while i < len(ids):
            j = i
            while j < len(ids) and flags[j] == flags[i]:
                j += 1
            if flags[i]:
                runs.append(tuple(tokenizer.decode(part, skip_special_tokens=True) for part in (ids[:i], ids[i:j])))
            i = j

    def respond(context: str) -> str:
        # A thread continued inside its outline has written part of its run already.
        found = [
            (s, text)
            for s, text in runs
            if context.startswith(s) and text.startswith(context[len(s) :]) and len(context) - len(s) < len(text)
        ]
        assert found, f"no trace run continues {context[-80:]!r}"
        start, text = max(found, key=lambda run: len(run[0]))
        return text[len(context) - len(start) :]

    return respond


def tree_keys(rows) -> dict[tuple, dict]:
    """Rows by their place in the tree: (spawn index, rank among that spawn's threads) from the root."""
    by_id = {row["thread_id"]: row for row in rows}
    keys: dict[int, tuple] = {}
    for row in sorted(rows, key=lambda r: r["thread_id"]):
        if row["parent_id"] < 0:
            keys[row["thread_id"]] = ()
            continue
        spawn = (row["parent_id"], row["spawn_index"])
        siblings = sorted(r["thread_id"] for r in rows if (r["parent_id"], r["spawn_index"]) == spawn)
        keys[row["thread_id"]] = keys[row["parent_id"]] + ((row["spawn_index"], siblings.index(row["thread_id"])),)
    return {keys[i]: by_id[i] for i in by_id}


COMPARED = ("task", "problem", "token_ids", "num_prompt_tokens", "trainable", "depth", "role",
            "episode_total_tokens", "episode_critical_path_tokens")  # fmt: skip


def replay(task, problem, rows, tokenizer, max_depth=2):
    engine = ScriptedEngine(tokenizer, replay_respond(rows, tokenizer))
    limits = ThreadLimits(max_depth=max_depth, max_threads=1000, max_thread_tokens=8192, max_total_tokens=1_000_000)
    controller = ParallelController(engine, tokenizer, task, SamplingParams(max_tokens=8192, temperature=0.0), limits)
    episode = asyncio.run(controller.run(problem))
    assert episode.verdict.reason is Reason.CORRECT, (episode.verdict, episode.output)
    ran, traced = tree_keys(episode.rows()), tree_keys(rows)
    assert ran.keys() == traced.keys()
    for key, row in traced.items():
        assert {c: ran[key][c] for c in COMPARED} == {c: row[c] for c in COMPARED}, key
    return episode


def test_countdown_traces_replay_through_the_controller(tokenizer):
    task = make_task("countdown")
    three = generate_problems(replace(CD3, num_train=30, seed=5))[0]
    four = generate_problems(CountdownConfig(num_train=12, num_val=0, seed=7))[0]
    num_nested = num_refork = 0
    for problem, max_depth in [(p, 1) for p in three] + [(p, 2) for p in four]:
        trace = parallel_trace(problem, random.Random(problem.id), sub_calls=2, max_depth=max_depth)
        prompt = [tokenizer.bos_token_id, *tokenizer.encode(prompt_text(problem))]
        rows = parallel_rows(trace.root, prompt, tokenizer, identity(problem, "parallel"))
        episode = replay(task, problem, rows, tokenizer, max_depth)
        num_nested += episode.depth == 2
        num_refork += any(r["spawn_index"] > 0 for r in rows)
    assert num_nested > 0 and num_refork > 0  # the replays covered nested blocks and a block after a failed one


def test_countdown_trace_rows_of_kind_parallel(tokenizer):
    problems = generate_problems(replace(CD3, num_train=40, seed=2))[0]
    config = TraceConfig(kind="parallel", sub_calls_min=2, sub_calls_max=3, max_depth=1)
    rows, stats = trace_rows(problems, config, tokenizer)
    assert stats.num_episodes == 40 and stats.num_threads == len(rows) > 40
    roots = [r for r in rows if r["role"] == "root"]
    budgets = {tokenizer.decode(r["token_ids"][r["num_prompt_tokens"] :]).split("\n")[0] for r in roots}
    assert budgets == {"Sub Call Budget 2", "Sub Call Budget 3"}
    assert all(r["episode_critical_path_tokens"] < r["episode_total_tokens"] for r in roots)


@pytest.fixture(scope="module")
def wordmath():
    config = WordMathConfig(max_steps=6, num_train=300, num_val=0, seed=4, tokenizer_problems=200)
    task = make_task(TaskConfig(name="wordmath", prompt_format="chat", wordmath=config))
    yield task, task.new_tokenizer(None), [math_problem(p) for p in task.generate()[0]]
    task.close()


def test_wordmath_traces_replay_through_the_controller(wordmath):
    task, tokenizer, problems = wordmath
    by_branches: dict[int, list] = {}
    for problem in problems:
        by_branches.setdefault(len(read_solution(problem).branches), []).append(problem)
    assert set(by_branches) == {0, 1, 2, 3}
    for problem in [p for group in by_branches.values() for p in group[:3]]:
        thread = solution_thread(read_solution(problem))
        names = {"episode_id": "e", "group_id": "e", "task": "wordmath", "problem_id": problem.id,
                 "problem": problem_json(problem)}  # fmt: skip
        rows = parallel_rows(thread, task.prompt_ids(problem, tokenizer), tokenizer, names)
        episode = replay(task, problem, rows, tokenizer)
        num_branches = len(read_solution(problem).branches)
        assert episode.num_threads == (1 if num_branches < 2 else 1 + num_branches)
