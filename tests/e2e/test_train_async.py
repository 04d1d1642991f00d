"""`treadle train` end to end on a local Ray: a few asynchronous steps of the committed APR model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from learner.models import load_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("eta", [0, 1])
def test_a_few_async_steps_respect_the_staleness_bound(tmp_path, eta):
    run_dir = tmp_path / "rl"
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml",
         "train.steps=3", "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=128",
         f"train.max_staleness={eta}", "train.dashboard=false", "train.object_store_mb=200",
         "train.eval_every=3", "train.eval_problems=8",
         f"run_dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [json.loads(line) for line in (run_dir / "train_metrics.jsonl").read_text().splitlines()]
    assert [s["version"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert 0 <= s["max_token_staleness"] <= eta  # no trained token older than eta versions
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + s["buffer"]["dropped"] + b["in_flight"] + b["buffered"]
        assert b["consumed"] == 4 * s["version"]  # 2 groups of 2 per step, whole groups only
    assert load_model(run_dir / "final").config.num_hidden_layers == 4
    evaluations = json.loads((run_dir / "eval.json").read_text())
    assert [e["step"] for e in evaluations] == [0, 3] and all(0 <= e["accuracy"] <= 1 for e in evaluations)
    assert steps[-1]["eval_accuracy"] == evaluations[-1]["accuracy"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # Every generated episode is in the rollout log, trained or not.
    from reasoning.episode_table import read_threads

    log = read_threads(run_dir / "rollouts" / "rollout-0.parquet")
    episodes = set(log.column("episode_id").to_pylist())
    assert len(episodes) >= steps[-1]["buffer"]["consumed"]
