"""`treadle eval --mode sequential` end to end on a fresh tiny model through the hf engine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def treadle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_sequential_eval_writes_summary_and_results(tmp_path):
    model = tmp_path / "model"
    assert treadle("model", "init", "--config", "configs/countdown-3.yaml", "--out", str(model)).returncode == 0
    problems = tmp_path / "problems.jsonl"
    rows = [{"id": "p0", "numbers": [3, 5, 7], "target": 22}, {"id": "p1", "numbers": [2, 9, 4], "target": 14}]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (model / "trained_problems.json").write_text(json.dumps([[[3, 5, 7], 22]]))  # p0 counts as seen
    out = tmp_path / "eval"
    result = treadle(
        "eval", "configs/countdown-3.yaml", f"eval.checkpoint={model}", "eval.max_new_tokens=12",
        "engine.backend=hf", "--problems", str(problems), "--mode", "sequential", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_problems"] == 2 and summary["num_unseen"] == 1
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert summary["mean_total_tokens"] <= 12 and summary["mean_critical_path_tokens"] == summary["mean_total_tokens"]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["p0", "p1"]
    assert all(r["reason"] and isinstance(r["output"], str) for r in results)


def test_eval_without_a_checkpoint_says_so(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "numbers": [1, 2], "target": 3}\n')
    result = treadle(
        "eval", "configs/countdown-3.yaml", f"eval.checkpoint={tmp_path / 'none'}",
        "--problems", str(problems), "--mode", "sequential", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.returncode == 2 and "no model checkpoint" in result.stderr


def test_eval_with_a_bad_problem_file_names_it(tmp_path):
    model = tmp_path / "model"
    assert treadle("model", "init", "--out", str(model)).returncode == 0
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "numbers": [1, 2]}\n')
    result = treadle(
        "eval", "configs/countdown-3.yaml", f"eval.checkpoint={model}",
        "--problems", str(problems), "--mode", "sequential", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.returncode == 2 and "missing target" in result.stderr and str(problems) in result.stderr


def test_math_task_eval_on_the_sample_file(tmp_path):
    from reasoning.math_samples import write_sample_problems

    model = tmp_path / "model"
    assert treadle("model", "init", "--out", str(model)).returncode == 0
    problems = tmp_path / "math.jsonl"
    write_sample_problems(problems)
    out = tmp_path / "eval"
    result = treadle(
        "eval", "configs/countdown-3.yaml", "task.name=math", f"eval.checkpoint={model}", "eval.max_new_tokens=8",
        "--problems", str(problems), "--mode", "sequential", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "math" and summary["num_problems"] == 11
    assert summary["accuracy"] == 0.0  # a random model answers nothing
    assert set(summary["reasons"]) <= {"no_answer", "wrong_value", "too_long", "timeout"}
    # Every mode serves every task: APR on math problems, with the countdown tokenizer's single-token tags.
    apr = treadle(
        "eval", "configs/countdown-3.yaml", "task.name=math", f"eval.checkpoint={model}", "eval.max_new_tokens=8",
        "eval.num_problems=3", "--problems", str(problems), "--mode", "apr", "--out", str(tmp_path / "apr"),
    )  # fmt: skip
    assert apr.returncode == 0, apr.stderr[-2000:]
    assert json.loads((tmp_path / "apr" / "summary.json").read_text())["mode"] == "apr"


def test_eval_with_damaged_trained_keys_names_the_file(tmp_path):
    model = tmp_path / "model"
    assert treadle("model", "init", "--out", str(model)).returncode == 0
    (model / "trained_problems.json.gz").write_bytes(b"\x1f\x8b not gzip")
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "numbers": [1, 2], "target": 3}\n')
    result = treadle(
        "eval", "configs/countdown-3.yaml", f"eval.checkpoint={model}", "engine.backend=hf",
        "--problems", str(problems), "--mode", "sequential", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.returncode == 2 and f"{model / 'trained_problems.json.gz'}: unreadable" in result.stderr
