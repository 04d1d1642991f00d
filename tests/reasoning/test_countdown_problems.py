"""Problem generation: APR's ranges, solvability, distinct keys, no val in train, determinism."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoning.countdown.config import CountdownConfig
from reasoning.countdown.problem_files import ProblemFileError, read_problems, write_problems
from reasoning.countdown.problems import ProblemSpaceExhausted, generate_problems
from reasoning.countdown.solver import solve
from reward import verify_countdown

CD3 = CountdownConfig(numbers=3, max_number=30, target_min=10, target_max=50, num_train=2000, num_val=200)


def test_problems_follow_the_settings_and_are_solvable():
    train, val = generate_problems(CD3)
    assert len(train) == 2000 and len(val) == 200
    for p in train + val:
        assert len(p.numbers) == 3
        assert all(1 <= n <= 29 for n in p.numbers)
        assert 10 <= p.target <= 50
        # An independent check: the solver's expression passes the verifier.
        expression = solve(p.numbers, p.target)
        assert verify_countdown(p.numbers, p.target, f"<answer>{expression}</answer>").reward == 1.0


def test_keys_are_distinct_and_val_is_never_in_train():
    train, val = generate_problems(CD3)
    train_keys = [p.key for p in train]
    val_keys = [p.key for p in val]
    assert len(set(train_keys)) == len(train_keys)
    assert len(set(val_keys)) == len(val_keys)
    assert not set(train_keys) & set(val_keys)
    assert train[0].key == (tuple(sorted(train[0].numbers)), train[0].target)


def test_same_seed_same_problems_other_seed_other_problems():
    assert generate_problems(CD3) == generate_problems(CD3)
    other = CountdownConfig(**{**CD3.__dict__, "seed": 1})
    assert generate_problems(other)[0] != generate_problems(CD3)[0]


def test_four_numbers_apr_ranges():
    train, val = generate_problems(CountdownConfig(num_train=300, num_val=30, seed=2))
    assert all(len(p.numbers) == 4 and all(1 <= n <= 99 for n in p.numbers) for p in train + val)
    assert all(10 <= p.target <= 100 for p in train + val)


def test_asking_for_more_problems_than_exist_fails_clearly(monkeypatch):
    import reasoning.countdown.problems as problems

    monkeypatch.setattr(problems, "DRAWS_WITHOUT_NEW_PROBLEM_LIMIT", 2000)
    # 2 numbers below 4 and targets 1..2: only a handful of distinct problems exist.
    config = CountdownConfig(numbers=2, max_number=4, target_min=1, target_max=2, num_train=50, num_val=1)
    with pytest.raises(ProblemSpaceExhausted, match="distinct solvable problems"):
        generate_problems(config)


def test_parquet_round_trip(tmp_path):
    train, _ = generate_problems(CD3)
    write_problems(tmp_path / "p.parquet", train)
    assert read_problems(tmp_path / "p.parquet") == train


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "a", "numbers": [1, 2], "target": 3}\n{"id": "a", "numbers": [1], "target": 1}', "duplicate id 'a'"),
        ('{"id": "a", "target": 3}', "missing numbers"),
        ('{"id": "a", "numbers": "12", "target": 3}', "numbers must be a list"),
        ('{"id": "a", "numbers": [1, true], "target": 3}', "numbers must be integers"),
        ('{"id": "a", "numbers": [1, 2], "target": 3.5}', "target must be an integer"),
        ('{"id": [], "numbers": [1, 2], "target": 3}', "id must be a string"),
        ("not json", "line 1: not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("", "holds no problems"),
    ],
)
def test_bad_jsonl_files_name_the_problem(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ProblemFileError, match=message) as info:
        read_problems(path)
    assert str(path) in str(info.value)


def test_parquet_missing_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "target": [3]}), tmp_path / "bad.parquet")
    with pytest.raises(ProblemFileError, match="missing column.*numbers"):
        read_problems(tmp_path / "bad.parquet")


def test_not_parquet(tmp_path):
    (tmp_path / "x.parquet").write_text("hello")
    with pytest.raises(ProblemFileError, match="not a readable Parquet file"):
        read_problems(tmp_path / "x.parquet")


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"id": ["a"], "numbers": [[1, 2]], "target": ["three"]}, "row 0.*target"),
        ({"id": ["a", "a"], "numbers": [[1, 2], [3, 4]], "target": [3, 7]}, "row 1: duplicate id 'a'"),
        ({"id": pa.array([], pa.string()), "numbers": pa.array([], pa.list_(pa.int64())), "target": pa.array([], pa.int64())}, "holds no problems"),
    ],
    ids=["wrong-type", "duplicate-ids", "empty"],
)  # fmt: skip
def test_bad_parquet_files_name_the_problem(tmp_path, columns, message):
    pq.write_table(pa.table(columns), tmp_path / "bad.parquet")
    with pytest.raises(ProblemFileError, match=message):
        read_problems(tmp_path / "bad.parquet")


def test_a_million_rows_are_read_in_bounded_time(tmp_path):
    n = 1_000_000
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(n)], "numbers": [[1, 2, 3]] * n, "target": [6] * n}),
                   tmp_path / "big.parquet")  # fmt: skip
    problems = read_problems(tmp_path / "big.parquet")
    assert len(problems) == n and problems[-1].id == f"p{n - 1}"
