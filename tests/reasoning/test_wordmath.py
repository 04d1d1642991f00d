"""Generated word problems (reasoning/wordmath/): answers equal an independent evaluation of
each problem's structure and of its question's numbers; the solution's lines show exactly
those steps; branches are independent; settings bound every number; validation keys
never in train; determinism by seed; exact counts of distinct problems (checked against
brute-force enumeration); the written rows read as math problems."""
from __future__ import annotations

import itertools
import json
import re

import pytest

from configs.typed import ConfigError, build
from reasoning.math_task import math_prompt, read_math_problems
from reasoning.tasks import TaskConfig, make_task
from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.counting import count_distinct, counts_by_template
from reasoning.wordmath.problems import ProblemSpaceExhausted, evaluate, generate_problems, slot_range
from reasoning.wordmath.rows import chat_solution, problem_row, sft_row, solution, write_rows
from reasoning.wordmath.templates import templates

SETTING = WordMathConfig(num_train=1500, num_val=300, seed=3)
LINE = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


@pytest.fixture(scope="module")
def problems():
    return generate_problems(SETTING)


def independent_value(op: str, a: int, b: int) -> int:
    """The arithmetic by hand, not the generator's: exact division only."""
    if op == "/":
        assert b != 0 and a % b == 0, (a, b)
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]


def test_answers_equal_an_independent_evaluation_of_the_structure(problems):
    train, val = problems
    for problem in train + val:
        record = json.loads(problem_row(problem)["structure"])
        # The question's numbers, read from its text, are the structure's inputs in order.
        numbers = [int(n) for n in re.findall(r"\d+", problem.question)]
        assert numbers == record["numbers"] == list(problem.numbers), problem.question
        values: list[int] = []
        for step in record["steps"]:
            a, b = ((numbers if arg[0] == "x" else values)[int(arg[1:])] for arg in step["args"])
            values.append(independent_value(step["op"], a, b))
            assert values[-1] == step["value"]
        assert values[-1] == record["answer"] == problem.answer
        # The solution shows each step as "a op b = c", in order, and ends in GSM8K's "#### N".
        text = solution(problem)
        assert text.endswith(f"\n#### {problem.answer}")
        shown = [LINE.search(line).groups() for line in text.splitlines()[:-1]]
        assert len(shown) == len(record["steps"])
        for (a, op, b, c), step, value in zip(shown, record["steps"], values):
            assert op == step["op"] and independent_value(op, int(a), int(b)) == int(c) == value
        assert chat_solution(problem).endswith(f"The answer is \\boxed{{{problem.answer}}}.")


def test_branches_are_independent_and_settings_bound_every_number(problems):
    train, val = problems
    for problem in train + val:
        assert SETTING.min_steps <= len(problem.steps) <= SETTING.max_steps
        assert len(problem.template.split(":")[1].split("+")) <= SETTING.max_parts
        assert all(2 <= n <= SETTING.max_value for n in problem.numbers)
        assert all(1 <= step.value <= SETTING.max_value for step in problem.steps)
        branch_of = {i: b for b, steps in enumerate(problem.branches) for i in steps}
        for i, step in enumerate(problem.steps):
            used = [int(arg[1:]) for arg in step.args if arg[0] == "s"]
            assert all(j < i for j in used)
            if i in branch_of:  # a branch's steps use only the question's numbers and its own steps
                assert all(branch_of.get(j) == branch_of[i] for j in used), problem.template
    frames = {p.template.split("/")[0] for p in train}
    assert frames == set(SETTING.frames)
    assert any(len(p.branches) >= 2 for p in train)  # independent sub-quantities combined at the end
    assert any(len(p.template.split(":")[1].split("+")) == 3 for p in train)


def test_no_validation_key_or_question_in_train_and_keys_distinct(problems):
    train, val = problems
    assert (len(train), len(val)) == (SETTING.num_train, SETTING.num_val)
    train_keys, val_keys = {p.key for p in train}, {p.key for p in val}
    assert len(train_keys) == len(train) and len(val_keys) == len(val)
    assert not train_keys & val_keys
    assert not {p.question for p in train} & {p.question for p in val}  # the math task's keys too
    assert len({p.id for p in train + val}) == len(train) + len(val)


def test_determinism_by_seed(problems):
    again = generate_problems(SETTING)
    assert again == problems
    other = generate_problems(WordMathConfig(num_train=50, num_val=10, seed=4))
    assert [p.question for p in other[0]] != [p.question for p in problems[0][:50]]


def test_counts_match_brute_force_enumeration():
    small = WordMathConfig(max_factor=3, max_quantity=5, max_value=20)
    counts = counts_by_template(small)
    groups = templates(small)
    assert sum(len(g) for g in groups.values()) == len(counts) > 100
    for template in (t for group in groups.values() for t in group):
        ranges = [range(low, high + 1) for low, high in (slot_range(kind, small) for _, kind in template.slots)]
        tuples = itertools.product(*ranges)
        valid = sum(1 for numbers in tuples if evaluate(template, numbers, small.max_value) is not None)
        assert valid == counts[template.id], template.id
    assert count_distinct(small) == sum(counts.values())


def test_distinct_counts_of_the_named_settings():
    # The figures configs/wordmath.yaml and configs/wordmath-parts.yaml state.
    assert count_distinct(WordMathConfig()) == 8_758_409_750
    assert count_distinct(WordMathConfig(max_steps=2)) == 2_447_235
    assert count_distinct(PARTS) == 4_259_306_530_019


PARTS = WordMathConfig(
    min_steps=5, max_steps=9, min_parts=3, max_parts=3, min_part_steps=2, frames=["total", "share", "left"],
    max_factor=5, max_quantity=20, max_value=300, num_train=300, num_val=50, seed=2,
)  # fmt: skip


def test_parts_settings_make_every_part_a_branch_of_its_own_steps():
    # configs/wordmath-parts.yaml: three people, each a two-step computation, then the frame.
    train, val = generate_problems(PARTS)
    for problem in train + val:
        assert [len(branch) for branch in problem.branches] == [2, 2, 2], problem.template
        assert len(problem.steps) in (8, 9)  # two additions, and share or left take one more step
        assert len(problem.labels) == 3 and all(label in problem.question for label in problem.labels)
    two_parts = WordMathConfig(min_parts=2, max_parts=2, min_part_steps=1, max_steps=6, num_train=200, num_val=0)
    for problem in generate_problems(two_parts)[0]:
        assert len(problem.branches) == 2 and all(len(branch) >= 1 for branch in problem.branches)
    assert {t.frame for group in templates(two_parts).values() for t in group} == {"total", "share", "left", "compare"}


def test_too_few_problems_is_an_error_naming_the_count():
    tiny = WordMathConfig(
        frames=["times"], max_steps=2, max_factor=3, max_quantity=4, max_value=20, num_train=100, num_val=5
    )
    assert count_distinct(tiny) == 45
    with pytest.raises(ProblemSpaceExhausted, match="found only 45 distinct problems"):
        generate_problems(tiny)


def test_config_is_validated_with_the_key_named():
    with pytest.raises(ConfigError, match=r"task\.wordmath\.min_steps: must be <= max_steps"):
        build(TaskConfig, {"name": "wordmath", "wordmath": {"min_steps": 4, "max_steps": 2}}, path="task")
    with pytest.raises(ConfigError, match=r"task\.wordmath\.min_parts: must be <= max_parts \(3 > 2\)"):
        build(TaskConfig, {"name": "wordmath", "wordmath": {"min_parts": 3, "max_parts": 2}}, path="task")
    with pytest.raises(ConfigError, match=r"task\.wordmath\.min_part_steps"):
        build(TaskConfig, {"name": "wordmath", "wordmath": {"min_part_steps": 3}}, path="task")
    with pytest.raises(ProblemSpaceExhausted, match="no template has between 2 and 4 steps .* 3 to 3 parts"):
        generate_problems(WordMathConfig(min_parts=3, min_part_steps=2))
    with pytest.raises(ConfigError, match=r"task\.wordmath\.frames: unknown frame\(s\) 'sum'"):
        build(TaskConfig, {"name": "wordmath", "wordmath": {"frames": ["total", "sum"]}}, path="task")


def test_rows_are_math_problems_and_the_chat_answer_scores_correct(tmp_path, problems):
    train, _ = problems
    path = tmp_path / "train.jsonl"
    write_rows(path, (problem_row(p) for p in train[:20]))
    read = read_math_problems(path)
    assert [(m.id, m.question, m.answer) for m in read] == [(p.id, p.question, solution(p)) for p in train[:20]]
    task = make_task(TaskConfig(name="wordmath"))
    try:
        for problem, math_problem in list(zip(train, read))[:3]:
            row = sft_row(problem)
            assert row["messages"][0]["content"] == math_prompt(math_problem)  # exactly the task's prompt text
            assert task.row_key(row) == math_problem.key  # SFT runs record the problems they trained on
            verdict = task.score(math_problem, row["messages"][1]["content"])
            assert verdict.reward == 1.0, verdict
        wrong = task.score(read[0], f"The answer is \\boxed{{{train[0].answer + 1}}}.")
        assert wrong.reward == 0.0
    finally:
        task.close()


def test_the_task_generates_its_split_as_math_problems():
    task = make_task(TaskConfig(name="wordmath", wordmath=WordMathConfig(num_train=30, num_val=6)))
    train, held_out = task.split()
    assert len(train) == 30 and len(held_out) == 6
    assert all(p.answer.rsplit("\n", 1)[-1].startswith("#### ") for p in train + held_out)
    assert not {p.key for p in train} & {p.key for p in held_out}
