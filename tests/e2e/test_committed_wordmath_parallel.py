"""The committed wordmath parallel-block model (checkpoints/wordmath-parts-sft-parallel,
bf16, the README's 90.8% model) evaluated as the README says, on the first 40 of the 500
held-out problems that `treadle data wordmath --config configs/wordmath-parts.yaml`
regenerates: none of them trained on (its compressed key file says so), three branches
and a conclusion per episode, a critical path well under the total, and most answers
right (36 of these 40 in the README's run)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from learner.checkpoint import load_trained_keys

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "checkpoints" / "wordmath-parts-sft-parallel"


def treadle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_committed_model_solves_held_out_problems_in_parallel_blocks(tmp_path):
    data = tmp_path / "data"
    result = treadle("data", "wordmath", "--config", "configs/wordmath-parts.yaml", "--out", str(data))
    assert result.returncode == 0, result.stderr
    problems = tmp_path / "val40.jsonl"
    problems.write_text("".join((data / "val.jsonl").read_text().splitlines(keepends=True)[:40]))
    result = treadle(
        "eval", "configs/wordmath-parts-sft-parallel.yaml", f"eval.checkpoint={MODEL}",
        "--problems", str(problems), "--mode", "parallel", "--out", str(tmp_path / "eval"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["num_problems"] == 40 and summary["num_unseen"] == 40
    trained = load_trained_keys(MODEL)  # the 20,000 problems it was trained on, the val ones not among them
    train = [json.loads(line)["question"] for line in (data / "train.jsonl").read_text().splitlines()]
    assert len(trained) == 20_000 and {("math", q) for q in train} == trained
    assert summary["mean_threads"] == 4.0 and summary["mean_depth"] == 1.0  # a block of three, then the conclusion
    assert summary["acceleration_ratio"] > 1.4
    assert summary["accuracy"] >= 0.8
