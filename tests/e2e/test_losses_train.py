"""`treadle train` for two steps with each loss: DAPO (ppo with clip-higher, token mean,
overlong shaping and dynamic sampling), GSPO, CISPO and REINFORCE++.

Each run goes through the CLI, as a user starts it, on the committed countdown-3 APR model
with small overrides (groups of 2, 2 groups a step, 64 new tokens a thread); each takes
about 20 s on a CPU. The checks are the ones every run must pass (two steps, finite loss,
the buffer's counters balanced) and the one each algorithm adds.
"""
from __future__ import annotations

import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from actors.run_log import read_jsonl

REPO = Path(__file__).resolve().parents[2]
COMMON = (
    "train.steps=2", "rl.group_size=2", "train.batch_groups=2", "train.max_new_tokens=64", "train.eval_every=0",
    "train.dashboard=false", "train.object_store_mb=200",
)  # fmt: skip
RUNS = {
    "dapo": ("rl.loss=ppo", "rl.clip_low=0.2", "rl.clip_high=0.28", "rl.normalization=token_mean",
             "rl.dynamic_sampling=true", "rl.overlong_buffer=64", "rl.overlong_max_tokens=160"),
    "gspo": ("rl.loss=gspo", "rl.normalization=episode_mean", "rl.ppo_epochs=2", "rl.off_policy=seq_mask"),
    "cispo": ("rl.loss=cispo", "rl.normalization=token_mean", "rl.off_policy=icepop"),
    "reinforce_pp": ("rl.estimator=reinforce_pp",),
}  # fmt: skip


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", *COMMON, *overrides,
         f"run_dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("name", list(RUNS))
def test_two_steps_with_each_loss(tmp_path, name):
    run_dir = tmp_path / name
    result = train(run_dir, *RUNS[name])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_jsonl(run_dir / "train_metrics.jsonl")
    assert [m["version"] for m in metrics] == [1, 2]
    for m in metrics:
        assert math.isfinite(m["loss"]) and 0.0 <= m["clip_fraction"] <= 1.0
        b = m["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"]
    if name == "dapo":
        # Dynamic sampling: every group the learner trained on has two different rewards; groups
        # with equal rewards were dropped as zero_variance (if any came), nothing else was dropped.
        rewards = defaultdict(list)
        for line in read_jsonl(run_dir / "consumed.jsonl"):
            for e in line["episodes"]:
                rewards[e["ticket"]].append(e["reward"])
        assert len(rewards) == 4 and all(len(set(r)) == 2 for r in rewards.values())
        assert set(metrics[-1]["dropped_by_reason"]) <= {"zero_variance"}
        assert all(0.0 <= m["overlong_fraction"] <= 1.0 for m in metrics)
    if name == "gspo":
        assert all(m["updates"] == 2 for m in metrics)  # two epochs: GSPO's clip acts in the second
