"""Fault injection on loopback: `kill -9` of the rollout worker, or of the learner, mid-run.

Ray restarts the worker; the driver drops the groups it had in flight as "worker_died"
(the episodes it had finished are owned by the buffer and stay), gives it the current
weights and restarts its loop, and training goes on to the last step with the
conservation counters balanced at every step and no episode trained twice. When the
learner dies, the driver rebuilds every actor from the newest loop checkpoint and goes
on; the steps after that checkpoint are undone (their log lines removed) and redone.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from actors.run_log import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in parents.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def actor_pid(driver: int, actor: str) -> int | None:
    """The process of the Ray actor class `actor` (e.g. "RolloutActor") under `driver`."""
    prefix = f"ray::{actor}".encode()
    for pid in descendants(driver):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(prefix):
                return pid
        except OSError:
            continue
    return None


def train_and_kill(run_dir: Path, actor: str, *overrides: str) -> tuple[subprocess.Popen, str, str]:
    """Run a short `treadle train`, `kill -9` the `actor` after its second step, wait for the end."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml",
         "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=96", "train.max_staleness=2",
         "train.dashboard=false", "train.object_store_mb=200", "train.eval_every=0", *overrides,
         f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = run_dir / "train_metrics.jsonl"
    deadline = time.monotonic() + 240
    killed = None
    while time.monotonic() < deadline and driver.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            killed = actor_pid(driver.pid, actor)
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.2)
    assert killed is not None, f"the run ended or stalled before the {actor} could be killed"
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err[-3000:]
    return driver, out, err


def assert_counted_once(run_dir: Path, versions: list[int], episodes: int) -> list[dict]:
    """Steps `versions` in the log, balanced counters at each, `episodes` trained once each."""
    steps = read_jsonl(run_dir / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == versions
    for s in steps:
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"]
    trained = [e["episode_id"] for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(trained) == len(set(trained)) == episodes
    return steps


def test_a_killed_rollout_worker_is_restarted_and_no_episode_is_lost(tmp_path):
    run_dir = tmp_path / "rl"
    driver, out, _ = train_and_kill(run_dir, "RolloutActor", "train.steps=6")
    assert actor_pid(driver.pid, "RolloutActor") is None  # everything is shut down
    steps = assert_counted_once(run_dir, [1, 2, 3, 4, 5, 6], 24)  # training went on
    assert steps[-1]["worker_restarts"] == 1
    assert all(set(s["dropped_by_reason"]) <= {"worker_died", "stale"} for s in steps)
    final = json.loads(out.strip().splitlines()[-2])
    assert final["version"] == 6


def test_a_dead_learner_sends_the_run_back_to_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "rl"
    _, _, err = train_and_kill(run_dir, "LearnerActor", "train.steps=5", "train.checkpoint_every=1")
    assert "going on from" in err
    # The undone steps were redone, once each in the log.
    steps = assert_counted_once(run_dir, [1, 2, 3, 4, 5], 20)
    assert steps[-1]["restores"] == 1
