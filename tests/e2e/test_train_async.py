"""`treadle bench async` end to end on a local Ray: 3 steps at eta = 0, then at eta = 1.

Both runs go through `treadle train`'s loop; each is checked as a training run (staleness
bound, conservation, whole groups, evaluations, TensorBoard, rollout log, ledger, final
policy) and the benchmark's JSON line is checked for its keys.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.rollout_log import read_rollout_logs
from actors.run_log import read_jsonl
from learner.models import load_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-async")
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "bench", "async", "--json", "--steps", "3", "--eta", "1",
         "--eval-problems", "8", "--out", str(out),
         "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=128", "train.dashboard=false",
         "train.object_store_mb=200"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_benchmark_reports_both_runs(bench):
    _, figures = bench
    for key in ("sync_samples_per_s", "async_samples_per_s", "speedup", "sync_final_accuracy",
                "async_final_accuracy", "max_token_staleness"):  # fmt: skip
        assert key in figures, key
    assert figures["speedup"] == pytest.approx(figures["async_samples_per_s"] / figures["sync_samples_per_s"], rel=1e-2)
    # What perfect overlap could give, from the synchronous run's own step times.
    g, l = figures["sync_generation_s_per_step"], figures["sync_learner_s_per_step"]
    # (g and l are printed rounded to milliseconds; the ratio is of the unrounded means)
    assert g > 0 and l > 0 and figures["ideal_speedup"] == pytest.approx((g + l) / max(g, l), rel=2e-2)
    assert figures["overlap_efficiency"] == pytest.approx(figures["speedup"] / figures["ideal_speedup"], rel=2e-3)
    assert 0 <= figures["max_token_staleness"] <= 1


@pytest.mark.parametrize("name, eta", [("sync", 0), ("async", 1)])
def test_each_run_respects_the_staleness_bound_and_counts_every_episode(bench, name, eta):
    run_dir = bench[0] / name
    steps = read_jsonl(run_dir / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert 0 <= s["max_token_staleness"] <= eta  # no trained token older than eta versions
        assert max(int(lag) for lag in s["token_staleness"]) == s["max_token_staleness"]
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"]
        assert b["consumed"] == 4 * s["version"]  # 2 groups of 2 per step, whole groups only
        assert 0 <= s["rollout_idle_ratio"] <= 1 and 0 <= s["learner_idle_ratio"] <= 1
    ledger = read_jsonl(run_dir / "consumed.jsonl")
    trained = [e["episode_id"] for line in ledger for e in line["episodes"]]
    assert len(trained) == len(set(trained)) == 12
    assert all(e["lag"] <= eta for line in ledger for e in line["episodes"])
    assert load_model(run_dir / "final").config.num_hidden_layers == 4
    evaluations = json.loads((run_dir / "eval.json").read_text())
    assert [e["step"] for e in evaluations] == [0, 3] and all(0 <= e["accuracy"] <= 1 for e in evaluations)
    assert steps[-1]["eval_accuracy"] == evaluations[-1]["accuracy"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    report = (run_dir / "report.md").read_text()
    assert "| 3 |" in report and f"(bound {eta})" in report and "admitted" in report
    # Every trained episode is in the rollout log (which also holds the untrained ones).
    logged = set(read_rollout_logs(run_dir / "rollouts").column("episode_id").to_pylist())
    assert set(trained) <= logged


def test_the_ideal_speedup_comes_from_the_synchronous_step_times():
    from benchmarks.async_rl import ideal_speedup

    # Step 1 (nothing to overlap with) is left out; then generation 2 s and learner 0.9 + 0.1 s
    # a step: perfect overlap runs a step in max(2, 1) = 2 s instead of 3 s -> 1.5.
    steps = [{"learner_wait_s": 9.0, "learner_step_s": 5.0, "weight_sync_s": 0.0}] + [
        {"learner_wait_s": 2.0, "learner_step_s": 0.9, "weight_sync_s": 0.1}
    ] * 2
    assert ideal_speedup(steps) == {"sync_generation_s_per_step": 2.0, "sync_learner_s_per_step": 1.0, "ideal_speedup": 1.5}
