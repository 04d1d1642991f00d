"""wordmath parallel traces: independent parts in branches, every equation checked, answers right.

Over two thousand generated problems (up to six steps, so three-branch problems occur):
a problem with two or more branches opens one block with one goal per branch (its
label), each branch shows exactly its part's steps, the conclusion the steps that combine
them and the answer line; every `a op b = c` line is exact integer arithmetic whose
operands are numbers the thread has seen (a branch: the question's numbers and its own
results, never a sibling's; the conclusion: those and every branch's results in the join);
the root's output as trained ends in the problem's answer. Problems with fewer branches
are written exactly as the chat SFT examples. The task reads the structure from problem
files and refuses, naming the problem or key, what cannot make traces.
"""
from __future__ import annotations

import json
import re

import pytest

from reasoning.countdown.config import TraceConfig
from reasoning.tasks import TaskConfig, TaskError, make_task
from reasoning.trace_rows import ThreadText
from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.parallel_traces import as_written, read_solution, solution_thread
from reasoning.wordmath.problems import generate_problems
from reasoning.wordmath.rows import chat_solution, math_problem, problem_row, write_rows
from reward.math_answer import extract_answer

EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
WIDE = WordMathConfig(max_steps=6, num_train=2000, num_val=0, seed=6, tokenizer_problems=200)


@pytest.fixture(scope="module")
def problems():
    return generate_problems(WIDE)[0] + generate_problems(WordMathConfig(num_train=300, num_val=0, seed=1))[0]


def check_equations(text: str, seen: set[int]) -> list[int]:
    """The results of `text`'s lines, each one equation `a op b = c` that is exact integer
    arithmetic on numbers in `seen` or earlier results; the answer line is left out."""
    results: list[int] = []
    for line in text.split("\n"):
        if line.startswith("The answer is"):
            continue
        (equation,) = EQUATION.findall(line)
        a, op, b, c = int(equation[0]), equation[1], int(equation[2]), int(equation[3])
        assert a in seen | set(results) and b in seen | set(results), (line, seen, results)
        assert (b != 0 and a % b == 0) if op == "/" else True, line
        assert {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else None}[op] == c, line
        results.append(c)
    return results


def test_every_equation_of_every_thread_checks(problems):
    num_by_branches: dict[int, int] = {}
    for word in problems:
        problem = math_problem(word)
        thread = solution_thread(read_solution(problem))
        numbers = set(word.numbers)
        num_by_branches[len(word.branches)] = num_by_branches.get(len(word.branches), 0) + 1
        if len(word.branches) < 2:
            assert thread.parts == [chat_solution(word)]
            assert check_equations(thread.parts[0], numbers)[-1] == word.answer
            continue
        block, conclusion = thread.parts
        assert isinstance(conclusion, str) and block.goals == [as_written(label, word.question) for label in word.labels]
        joined: list[int] = []
        for branch, steps in zip(block.branches, word.branches):
            (text,) = branch.parts
            assert text.split("\n") == [word.lines[i] for i in steps]  # exactly its part's steps
            joined += check_equations(text, numbers)  # only the question's numbers and its own results
        assert conclusion.endswith(f"The answer is \\boxed{{{word.answer}}}.</conclusion>")
        assert check_equations(conclusion.removesuffix("</conclusion>"), numbers | set(joined))[-1] == word.answer
    assert num_by_branches.keys() == {0, 1, 2, 3}


def test_a_goal_is_its_label_as_the_question_writes_it():
    question = "Ben has 3 bags. Then Ana buys 2 pens, and Ben.s friend Banana... Ana."
    assert as_written("Ben", question) == "Ben"  # the question's first word: no space before it
    assert as_written("Ana", question) == " Ana"  # the first whole-word match, not "Banana"
    assert as_written("Cal", question) == "Cal"  # not in the question: as it is
    assert as_written("Ana", "(Ana) has 2.") == "Ana"  # a whole word after a non-space


def test_goals_are_the_tokens_of_their_part_in_the_prompt(problems, task, tokenizer):
    for word in [w for w in problems if len(w.branches) > 1][:100]:
        problem = math_problem(word)
        prompt = task.prompt_ids(problem, tokenizer)
        for goal in read_solution(problem).goals:
            ids = tokenizer(goal, add_special_tokens=False)["input_ids"]
            assert any(prompt[i : i + len(ids)] == ids for i in range(len(prompt))), (goal, word.question)


def test_labels_name_each_branchs_person(problems):
    for word in problems:
        assert len(word.labels) == len(word.branches) == len(set(word.labels))
        for label, steps in zip(word.labels, word.branches):
            assert label in word.question.split() or f"{label}." in word.question, (label, word.question)
            assert any(label in word.lines[i].split() for i in steps), (label, word.lines)


@pytest.fixture(scope="module")
def task():
    task = make_task(TaskConfig(name="wordmath", prompt_format="chat", wordmath=WIDE))
    yield task
    task.close()


@pytest.fixture(scope="module")
def tokenizer(task):
    return task.new_tokenizer(None)


def test_trace_rows_from_a_problem_file(tmp_path, task, tokenizer, problems):
    path = tmp_path / "train.jsonl"
    write_rows(path, (problem_row(p) for p in problems[:200]))
    read = task.read_problems(path)
    assert [json.loads(p.structure)["labels"] for p in read] == [list(p.labels) for p in problems[:200]]
    rows, stats = task.trace_rows(read, TraceConfig(kind="parallel"), tokenizer)
    assert (stats.num_problems, stats.num_episodes, stats.num_too_long) == (200, 200, 0)
    roots = [row for row in rows if row["role"] == "root"]
    assert stats.num_threads == len(rows) == 200 + sum(len(p.branches) for p in problems[:200] if len(p.branches) >= 2)
    for row, problem, word in zip(roots, read, problems):
        assert row["token_ids"][: row["num_prompt_tokens"]] == task.prompt_ids(problem, tokenizer)
        output = tokenizer.decode(row["token_ids"][row["num_prompt_tokens"] :], skip_special_tokens=True)
        assert extract_answer(output)[0] == str(word.answer)
        assert row["token_ids"][-1] == tokenizer.eos_token_id and row["task"] == "wordmath"
    short, stats = task.trace_rows(read, TraceConfig(kind="parallel", max_tokens=100), tokenizer)
    assert stats.num_too_long > 0 and all(len(row["token_ids"]) <= 100 for row in short)


def test_what_cannot_make_traces_is_refused_by_name(tmp_path, task, tokenizer, problems):
    with pytest.raises(TaskError, match="traces.kind: the wordmath task writes parallel traces, not 'apr'"):
        task.trace_rows([], TraceConfig(kind="apr"), tokenizer)
    path = tmp_path / "plain.jsonl"
    write_rows(path, [{k: v for k, v in problem_row(problems[0]).items() if k != "structure"}])
    with pytest.raises(TaskError, match=f"problem {problems[0].id} has no structure"):
        task.trace_rows(task.read_problems(path), TraceConfig(kind="parallel"), tokenizer)
    old = problem_row(problems[0])
    record = json.loads(old["structure"])
    del record["labels"]
    write_rows(path, [{**old, "structure": json.dumps(record)}])
    with pytest.raises(TaskError, match="lacks steps, branches, labels or answer"):
        task.trace_rows(task.read_problems(path), TraceConfig(kind="parallel"), tokenizer)
    write_rows(path, [{**old, "structure": 7}])
    with pytest.raises(TaskError, match="row 0 .*column structure: expected JSON text"):
        task.read_problems(path)


def test_sequential_kind_is_the_chat_example(problems):
    word = next(p for p in problems if len(p.branches) == 2)
    assert solution_thread(read_solution(math_problem(word)), "sequential") == ThreadText([chat_solution(word)])
