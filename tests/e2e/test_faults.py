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


def rollout_worker_pid(driver: int) -> int | None:
    for pid in descendants(driver):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::RolloutActor"):
                return pid
        except OSError:
            continue
    return None


def test_a_killed_rollout_worker_is_restarted_and_no_episode_is_lost(tmp_path):
    run_dir = tmp_path / "rl"
    driver = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=6",
         "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=96", "train.max_staleness=2",
         "train.dashboard=false", "train.object_store_mb=200", "train.eval_every=0", f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = run_dir / "train_metrics.jsonl"
    deadline = time.monotonic() + 240
    killed = None
    while time.monotonic() < deadline and driver.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            killed = rollout_worker_pid(driver.pid)
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.2)
    assert killed is not None, "the run ended or stalled before the rollout worker could be killed"
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err[-3000:]
    assert rollout_worker_pid(driver.pid) is None  # everything is shut down

    steps = read_jsonl(metrics)
    assert [s["version"] for s in steps] == [1, 2, 3, 4, 5, 6]  # training went on
    assert steps[-1]["worker_restarts"] == 1
    for s in steps:
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"]
        assert set(s["dropped_by_reason"]) <= {"worker_died", "stale"}
    trained = [e["episode_id"] for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(trained) == len(set(trained)) == 24
    final = json.loads(out.strip().splitlines()[-2])
    assert final["version"] == 6


def learner_pid(driver: int) -> int | None:
    for pid in descendants(driver):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::LearnerActor"):
                return pid
        except OSError:
            continue
    return None


def test_a_dead_learner_sends_the_run_back_to_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "rl"
    driver = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=5",
         "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=96", "train.max_staleness=2",
         "train.dashboard=false", "train.object_store_mb=200", "train.eval_every=0", "train.checkpoint_every=1",
         f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = run_dir / "train_metrics.jsonl"
    deadline = time.monotonic() + 240
    killed = None
    while time.monotonic() < deadline and driver.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            killed = learner_pid(driver.pid)
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.2)
    assert killed is not None, "the run ended or stalled before the learner could be killed"
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err[-3000:]
    assert "going on from" in err

    steps = read_jsonl(metrics)
    assert [s["version"] for s in steps] == [1, 2, 3, 4, 5]  # the undone steps were redone, once each in the log
    assert steps[-1]["restores"] == 1
    trained = [e["episode_id"] for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(trained) == len(set(trained)) == 20
    for s in steps:
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"]
