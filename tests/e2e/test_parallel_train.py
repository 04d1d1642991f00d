"""`treadle train configs/countdown-3-rl-parallel.yaml` for two steps, as a user starts it:
the committed parallel-block model in train.mode=parallel through the asynchronous loop,
with the ThreadWeaver bonus and prefix-shared learner batches (groups of 2, 2 groups a
step, 96 new tokens a thread). Checks: two steps with finite numbers, the buffer's
counters balanced, episodes with several threads trained, each trained episode's
critical path no longer than its total, and each step's mean episode lengths (all tokens,
critical path) those of the episodes it consumed."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from actors.run_log import read_jsonl
from learner.checkpoint import read_trained_key_list

REPO = Path(__file__).resolve().parents[2]


def test_two_parallel_block_steps_with_the_bonus_on_shared_batches(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-parallel.yaml", "train.steps=2",
         "rl.group_size=2", "train.batch_groups=2", "train.groups_in_flight=2", "train.max_new_tokens=96",
         "train.eval_every=0", "train.dashboard=false", "train.object_store_mb=200", f"run_dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_jsonl(run_dir / "train_metrics.jsonl")
    assert [m["version"] for m in metrics] == [1, 2]
    for m in metrics:
        assert math.isfinite(m["loss"]) and math.isfinite(m["entropy"])
        b = m["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"]
    episodes = [e for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(episodes) == 8
    rows = [r for path in sorted((run_dir / "rollouts").rglob("*.parquet")) for r in pq.read_table(path).to_pylist()]
    assert max(r["thread_id"] for r in rows) >= 1  # the model opened parallel blocks
    assert all(r["episode_critical_path_tokens"] <= r["episode_total_tokens"] for r in rows)
    lengths = {r["episode_id"]: (r["episode_total_tokens"], r["episode_critical_path_tokens"]) for r in rows}
    for m, line in zip(metrics, read_jsonl(run_dir / "consumed.jsonl"), strict=True):
        consumed = [lengths[e["episode_id"]] for e in line["episodes"]]
        assert m["episode_tokens"] == round(sum(t for t, _ in consumed) / len(consumed), 1)
        assert m["episode_critical_path_tokens"] == round(sum(c for _, c in consumed) / len(consumed), 1)
        assert m["acceleration_ratio"] >= 1.0
    # Every loop checkpoint's policy records the problems trained on, as the final one does,
    # so `treadle eval` of an intermediate policy reports accuracy over unseen problems.
    keys = read_trained_key_list(run_dir / "final")
    assert keys and read_trained_key_list(run_dir / "checkpoints" / "step-2" / "policy") == keys
