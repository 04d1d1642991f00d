"""Fault injection on loopback: `kill -9` of the rollout worker, or of the learner, mid-run.

Ray restarts the worker; the driver drops the groups it had in flight as "worker_died"
(the episodes it had finished are owned by the buffer and stay), gives it the current
weights and restarts its loop, and training goes on to the last step with the
conservation counters balanced at every step and no episode trained twice. When the
learner dies, the driver rebuilds every actor from the newest loop checkpoint and goes
on; the steps after that checkpoint are undone (their log lines removed) and redone.
When the driver itself is killed, its local Ray goes down with it and
`treadle train --resume` goes on from the newest checkpoint in the same way.
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
from tests.e2e.processes import actor_pid, command_line, descendants, process_name, wait_for

REPO = Path(__file__).resolve().parents[2]


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """A short `treadle train` of the APR model in a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml",
         "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=96", "train.max_staleness=2",
         "train.dashboard=false", "train.object_store_mb=200", "train.eval_every=0", *overrides,
         f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def logged_steps(run_dir: Path) -> int:
    metrics = run_dir / "train_metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def train_and_kill(run_dir: Path, actor: str, *overrides: str) -> tuple[subprocess.Popen, str, str]:
    """Run a short `treadle train`, `kill -9` the `actor` after its second step, wait for the end."""
    driver = start_training(run_dir, *overrides)
    wait_for(lambda: logged_steps(run_dir) >= 2 and actor_pid(driver.pid, actor) is not None, driver, f"a {actor}", 240)
    os.kill(actor_pid(driver.pid, actor), signal.SIGKILL)
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
    final = json.loads(next(line for line in out.splitlines() if line.startswith("{")))  # the run's summary line
    assert final["version"] == 6


def test_a_dead_learner_sends_the_run_back_to_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "rl"
    _, _, err = train_and_kill(run_dir, "LearnerActor", "train.steps=5", "train.checkpoint_every=1")
    assert "going on from" in err
    # The undone steps were redone, once each in the log.
    steps = assert_counted_once(run_dir, [1, 2, 3, 4, 5], 20)
    assert steps[-1]["restores"] == 1


def test_a_killed_driver_goes_on_from_its_last_checkpoint_with_resume(tmp_path):
    run_dir = tmp_path / "rl"
    driver = start_training(run_dir, "train.steps=6", "train.checkpoint_every=2")
    committed = run_dir / "checkpoints" / "step-2" / "manifest.json"
    wait_for(lambda: committed.is_file() and logged_steps(run_dir) >= 3, driver, "step 3", 240)
    ray_processes = descendants(driver.pid)
    core = [pid for pid in ray_processes if not command_line(pid).endswith("Agent")]
    assert {"gcs_server", "raylet"} <= {process_name(pid) for pid in core}
    driver.kill()  # kill -9: no clean-up of any kind runs
    driver.communicate(timeout=60)
    # The local Ray the driver started goes down with it: its GCS, raylet and actors at
    # once; Ray's two agents poll for the raylet and follow a minute or two later.
    deadline = time.monotonic() + 60
    while (alive := [pid for pid in core if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive == [], [command_line(pid) for pid in alive]

    resumed = subprocess.run([sys.executable, "-m", "actors.cli", "train", "--resume", str(run_dir)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The steps after the newest checkpoint were undone and redone; none is logged twice.
    assert_counted_once(run_dir, [1, 2, 3, 4, 5, 6], 24)
