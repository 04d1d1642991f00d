"""The math task: the sample file in both formats, GSM8K and MATH-500 columns, bad files.

The sample set's gold answers are also checked end to end against hand-written model
outputs through reward.math_answer.verify_math (one worker process for the module).
"""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoning.math_samples import SAMPLE_PROBLEMS, write_sample_problems
from reasoning.math_task import MathFileError, MathProblem, math_prompt, read_math_problems
from reward.math_answer import verify_math


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path, columns):
    pq.write_table(pa.table(columns), str(path))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sample_file_round_trips(tmp_path, suffix):
    path = tmp_path / f"sample{suffix}"
    written = write_sample_problems(path)
    assert read_math_problems(path) == written == list(SAMPLE_PROBLEMS)


def test_sample_mixes_gsm8k_and_math_answers():
    assert 8 <= len(SAMPLE_PROBLEMS) <= 12
    assert len({p.id for p in SAMPLE_PROBLEMS}) == len(SAMPLE_PROBLEMS)
    gsm8k = [p for p in SAMPLE_PROBLEMS if "####" in p.answer]
    latex = {p.answer for p in SAMPLE_PROBLEMS if "####" not in p.answer}
    assert len(gsm8k) == 5
    assert {r"\frac{1}{2}", r"\sqrt{2}", r"3\pi", "(1, 2)"} <= latex


# A plausible correct model output for each sample problem, worked by hand; several
# state the answer in a different form than the gold (1,960; 150.0; 0.5; 2^{1/2}; 3.5).
CORRECT_OUTPUTS = {
    "gsm-0": r"42 - 30 = 12, so \boxed{12}",
    "gsm-1": "90 + 20 = 110 pages. The final answer is 110.",
    "gsm-2": "<answer>6</answer>",
    "gsm-3": r"\boxed{1,960}",
    "gsm-4": r"\boxed{150.0}",
    "math-0": r"\boxed{0.5}",
    "math-1": r"\boxed{2^{1/2}}",
    "math-2": r"$2\pi \cdot \frac{3}{2} = \boxed{3 \pi}$",
    "math-3": r"\boxed{(1,2)}",
    "math-4": r"\boxed{\frac{6 \cdot 5}{2}}",
    "math-5": r"x = \boxed{3.5}",
}


def test_sample_answers_verify_against_hand_worked_outputs():
    assert set(CORRECT_OUTPUTS) == {p.id for p in SAMPLE_PROBLEMS}
    for problem in SAMPLE_PROBLEMS:
        verdict = verify_math(problem.answer, CORRECT_OUTPUTS[problem.id])
        assert verdict.is_correct, (problem.id, verdict)
    assert not verify_math(SAMPLE_PROBLEMS[0].answer, r"\boxed{13}").is_correct


def test_math500_columns_and_default_ids(tmp_path):
    # MATH-500's own rows carry problem, solution, answer, subject, level, unique_id.
    path = write_jsonl(
        tmp_path / "math500.jsonl",
        [
            {"problem": "Compute $1+1$.", "solution": "$1+1=\\boxed{2}$", "answer": "2", "level": 1},
            {"problem": "Half of 1?", "solution": "...", "answer": "\\frac{1}{2}", "unique_id": "x"},
        ],
    )
    assert read_math_problems(path) == [
        MathProblem("0", "Compute $1+1$.", "2"),
        MathProblem("1", "Half of 1?", "\\frac{1}{2}"),
    ]


def test_gsm8k_parquet_without_ids_and_integer_answers(tmp_path):
    path = write_parquet(tmp_path / "gsm.parquet", {"question": ["2+2?", "3+3?"], "answer": [4, 6]})
    assert read_math_problems(path) == [MathProblem("0", "2+2?", "4"), MathProblem("1", "3+3?", "6")]


def test_prompt_asks_for_a_boxed_answer():
    prompt = math_prompt(MathProblem("0", "What is 2+2?", "4"))
    assert prompt == "What is 2+2?\n\nPlease reason step by step, and put your final answer within \\boxed{}."


OK = {"question": "q", "answer": "1"}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"answer": "1"}], "row 0 (line 1): missing column question (or problem)"),
        ([OK, {"question": "q"}], "row 1 (line 2): missing column answer"),
        ([{"question": 5, "answer": "1"}], "row 0 (line 1): column question: expected a string, got int"),
        ([{"question": "q", "answer": [1]}], "column answer: expected a string or an integer, got list"),
        ([{"question": "q", "answer": "1", "id": 1.5}], "column id: expected a string or an integer, got float"),
        ([{"question": "q", "problem": "p", "answer": "1"}], "both question and problem"),
        ([{"question": "  ", "answer": "1"}], "column question: empty"),
        ([{**OK, "id": "a"}, {**OK, "id": "a"}], "row 1 (line 2): column id: duplicate id 'a' (first in row 0)"),
        ([{**OK, "id": "1"}, OK], "row 1 (line 2): column id: duplicate id '1'"),  # default id collides
        ([], "holds no problems"),
    ],
)
def test_bad_jsonl_rows_name_file_row_and_column(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(MathFileError, match="^" + re.escape(str(path))) as error:
        read_math_problems(path)
    assert message in str(error.value)


def test_bad_jsonl_lines_are_located_by_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(OK) + "\n\n{oops\n", encoding="utf-8")
    with pytest.raises(MathFileError, match=r"row 1 \(line 3\): not JSON"):
        read_math_problems(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(MathFileError, match="expected a JSON object, got list"):
        read_math_problems(path)


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"question": ["q"]}, "row 0: missing column answer"),
        ({"question": ["q"], "answer": [0.5]}, "row 0: column answer: expected a string or an integer, got float"),
        ({"question": ["q", "q"], "answer": ["1", None]}, "row 1: missing column answer"),
        ({"id": ["a", "a"], "question": ["q", "q"], "answer": ["1", "2"]}, "row 1: column id: duplicate id 'a'"),
        ({"question": pa.array([], pa.string()), "answer": pa.array([], pa.string())}, "holds no problems"),
    ],
)
def test_bad_parquet_files(tmp_path, columns, message):
    path = write_parquet(tmp_path / "bad.parquet", columns)
    with pytest.raises(MathFileError) as error:
        read_math_problems(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_unreadable_missing_or_unknown_files(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(MathFileError, match="not a readable Parquet file"):
        read_math_problems(garbage)
    with pytest.raises(MathFileError, match="no such file"):
        read_math_problems(tmp_path / "absent.jsonl")
    with pytest.raises(MathFileError, match="unknown suffix '.csv'"):
        read_math_problems(tmp_path / "problems.csv")
