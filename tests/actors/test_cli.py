"""The `treadle` command line, run as a user runs it (a subprocess of the installed CLI)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reasoning.countdown.solver import is_solvable
from reasoning.countdown.problems import problem_key

REPO = Path(__file__).resolve().parents[2]


def treadle(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [[], ["data"], ["data", "countdown"], ["verify"], ["verify", "countdown"], ["model"], ["model", "init"], ["config"]],
)
def test_help_everywhere(args):
    result = treadle(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: treadle" in result.stdout


def test_data_countdown_as_in_the_issue(tmp_path):
    out = tmp_path / "D"
    result = treadle(
        "data", "countdown", "--out", str(out), "--numbers", "4", "--max-number", "100",
        "--target-min", "10", "--target-max", "100", "--train", "1000", "--val", "100", "--seed", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    train = pq.read_table(out / "train.parquet")
    val = pq.read_table(out / "val.parquet")
    assert train.column_names == val.column_names == ["id", "numbers", "target"]
    assert (train.num_rows, val.num_rows) == (1000, 100)
    rows = train.to_pylist() + val.to_pylist()
    assert all(len(r["numbers"]) == 4 and all(1 <= n <= 99 for n in r["numbers"]) for r in rows)
    assert all(10 <= r["target"] <= 100 and is_solvable(r["numbers"], r["target"]) for r in rows)
    train_keys = {problem_key(r["numbers"], r["target"]) for r in train.to_pylist()}
    assert not train_keys & {problem_key(r["numbers"], r["target"]) for r in val.to_pylist()}
    assert not list(out.glob(".*.tmp"))


def test_data_countdown_from_config_with_flag_override(tmp_path):
    result = treadle(
        "data", "countdown", "--config", "configs/countdown-3.yaml", "--out", str(tmp_path), "--train", "50", "--val", "5"
    )
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert len(rows) == 50 and all(len(r["numbers"]) == 3 and r["target"] <= 50 for r in rows)


def test_bad_config_fails_before_anything_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("# treadle config bad.yaml\ntask:\n  countdown:\n    numbers: 3\n    max_numbr: 30\n    num_train: -5\n")
    out = tmp_path / "out"
    result = treadle("data", "countdown", "--config", str(bad), "--out", str(out))
    assert result.returncode == 2
    assert "task.countdown.max_numbr: unknown key; did you mean 'max_number'?" in result.stderr
    assert "task.countdown.num_train: must be >= 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--numbers", "9"], "task.countdown.numbers: must be >= 2 and <= 6; got 9"),
        (["--target-min", "80", "--target-max", "20"], "task.countdown.target_min: must be <= target_max"),
        (["--train", "-1"], "task.countdown.num_train: must be >= 0"),
    ],
)
def test_bad_flags_name_the_key(tmp_path, flags, message):
    result = treadle("data", "countdown", "--out", str(tmp_path / "x"), *flags)
    assert result.returncode == 2 and message in result.stderr


def test_config_command_prints_the_validated_tree():
    result = treadle("config", "configs/countdown-3.yaml", "task.countdown.seed=9")
    assert result.returncode == 0, result.stderr
    assert "seed: 9" in result.stdout and "preset: tiny" in result.stdout
    bad = treadle("config", "configs/countdown-3.yaml", "model.preset=huge")
    assert bad.returncode == 2 and "model.preset: must be one of tiny, small, apr-228m" in bad.stderr


MARKER = Path("/tmp/treadle-verify-pwned")

HOSTILE_RECORDS = [
    ({"numbers": [3, 5, 7, 2], "target": 24, "output": "<answer>(5*3)+(7+2)</answer>"}, "correct"),
    ({"numbers": [3, 5, 7, 2], "target": 24, "output": "x" * 2_000_000}, "too_long"),
    ({"numbers": [3, 5], "target": 8, "output": "<answer>" + "(" * 5000 + "3+5" + ")" * 5000 + "</answer>"}, "too_long"),
    ({"numbers": [3, 5], "target": 8, "output": "<answer>3\u0000+5</answer>"}, "bad_syntax"),
    ({"numbers": [3, 5], "target": 8, "output": "<answer>\uff13+5</answer>"}, "bad_syntax"),
    ({"numbers": [3, 5], "target": 8, "output": "<answer>\u0663+5</answer>"}, "bad_syntax"),
    ({"numbers": [3, 5], "target": 8, "output": f"<answer>__import__('os').system('touch {MARKER}')</answer>"}, "bad_syntax"),
    ({"numbers": [3, 5], "target": 8, "output": "<answer>3+5;import os</answer>"}, "bad_syntax"),
    ({"numbers": [3, 5, 7], "target": 8, "output": "<answer>3+5</answer>"}, "wrong_numbers"),
    ({"numbers": [3, 5], "target": 8, "output": "<answer>3+5+5-5</answer>"}, "wrong_numbers"),
    ({"numbers": [3, 5], "target": 11, "output": "<answer>3+3+5</answer>"}, "wrong_numbers"),
    ({"numbers": [3, 5, 5], "target": 8, "output": "<answer>3/(5-5)</answer>"}, "division_by_zero"),
    ({"numbers": [3, 5], "target": 9, "output": "<answer>3+5</answer>"}, "wrong_value"),
    ({"numbers": [3, 5], "target": 9, "output": "I think it is 8"}, "no_answer"),
    ({"numbers": "3, 5", "target": 9, "output": "<answer>3+5</answer>"}, "bad_record"),
    ({"numbers": [3, 5], "target": 9}, "bad_record"),
]
BAD_LINES = ["not json at all", "[1, 2, 3]", "[" * 100_000 + "]" * 100_000, '{"target": 1' + "0" * 5000 + "}", "\x00\x00"]


def test_verify_countdown_hostile_file(tmp_path):
    source = tmp_path / "hostile.jsonl"
    lines = [json.dumps(record) for record, _ in HOSTILE_RECORDS] + BAD_LINES
    source.write_text("\n".join(lines) + "\n\n")
    out = tmp_path / "scored.jsonl"
    MARKER.unlink(missing_ok=True)
    start = time.perf_counter()
    result = treadle("verify", "countdown", "--in", str(source), "--out", str(out))
    assert time.perf_counter() - start < 30
    assert result.returncode == 0, result.stderr
    assert not MARKER.exists()
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == len(lines)
    for (record, reason), got in zip(HOSTILE_RECORDS, scored):
        assert got["reason"] == reason, (record.get("output", "")[:60], got)
        assert got["reward"] == (1.0 if reason == "correct" else 0.0)
        assert {k: got[k] for k in record} == record  # the same object, fields added
    for number, got in enumerate(scored[len(HOSTILE_RECORDS) :], start=len(HOSTILE_RECORDS) + 1):
        assert got["reason"] == "bad_record" and got["reward"] == 0.0 and got["line"] == number
        assert got["raw"] == lines[number - 1]  # nothing is lost
    assert f"{1}/{len(lines)} correct" in result.stderr


def test_verify_streams_stdin_to_stdout():
    line = json.dumps({"numbers": [2, 2], "target": 4, "output": "<answer>2*2</answer>", "id": 7})
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "verify", "countdown", "--in", "-", "--out", "-", "--details"],
        input=line + "\n", cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {**json.loads(line), "reward": 1.0, "reason": "correct", "detail": ""}


def test_verify_missing_input_file(tmp_path):
    result = treadle("verify", "countdown", "--in", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_eval_offers_exactly_the_controller_factorys_modes():
    # The CLI spells them out so that `treadle --help` does not import the reasoning stack.
    from actors.commands.eval_cmd import MODES
    from reasoning.controllers.factory import MODES as FACTORY_MODES

    assert MODES == FACTORY_MODES
