"""Soak (slow; `make test-slow`): asynchronous training with random rollout-worker kills, on one node or across nodes.

`test_soak_with_worker_kills` runs `treadle train` for TREADLE_SOAK_S seconds (default
1800), sends `kill -9` to the rollout worker every 2-4 minutes, samples the memory of the
driver and every process under it each minute, then stops the run with SIGINT.
`test_soak_across_nodes_with_node_kills` does the same on a three-node loopback cluster
(tests/e2e/loopback_cluster.py: the head with the learner, worker nodes w1 and w2 with
`rollout: 1` each, one rollout worker): every 2-4 minutes it kills the whole node that
holds the rollout worker (`kill -9` of all its processes at once), Ray restarts the worker
on the other node, and the lost node is started again 30 s later, ready for the next kill;
memory is sampled over the driver and every process of every node, by node and process.
TREADLE_SOAK_KILL_S ("120-240") and TREADLE_SOAK_SAMPLE_S (60) change the kill interval
and the sampling period, for a short check of the soak itself. Memory is the proportional set
size (PSS): pages shared between processes, such as the object store that every Ray
process maps, count once in all, not once per process as in the sum of their resident
sizes. Each sample, by process name, goes to RUN/soak_memory.jsonl. Every step's counters must
balance (admitted = consumed + dropped + in flight + buffered: nothing lost), no episode
may be trained twice, and the run must have restarted the worker after each kill. The
figures (episodes admitted, consumed, dropped by reason, lost; memory growth per hour
over the second half, by a least-squares line, in all and for the processes that grew
most) go to RUN/soak.json and are printed.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.run_log import read_jsonl
from tests.e2e.loopback_cluster import LoopbackCluster, logged_steps
from tests.e2e.processes import actor_pid, descendants, process_name

REPO = Path(__file__).resolve().parents[2]


def proportional_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def resident_bytes(pids: list[int]) -> int:
    """The sum of the processes' resident sizes: shared pages count once per process."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def memory_by_process(root: int, pids: list[int]) -> dict[str, int]:
    """PSS bytes of `pids` (`root` among them, named "driver"), summed by process name."""
    out: dict[str, int] = {}
    for pid in pids:
        # A Ray worker's title names the method it is running ("ray::LearnerActor.step"): keep the class.
        name = "driver" if pid == root else process_name(pid).split(".")[0]
        out[name] = out.get(name, 0) + proportional_bytes(pid)
    return out


def slope_per_hour(samples: list[tuple[float, int]]) -> float:
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return 0.0 if var == 0 else sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 3600


def second_half_growth_mb_per_hour(samples: list[tuple[float, int]]) -> float | None:
    """MB an hour over the second half of (seconds, bytes) samples; None for fewer than 4."""
    return round(slope_per_hour(samples[len(samples) // 2 :]) / 2**20, 1) if len(samples) >= 4 else None


def growth_by_process(samples: list[tuple[float, dict[str, int]]], top: int = 6) -> dict[str, float]:
    """The processes whose memory grew fastest (MB an hour, least squares)."""
    if len(samples) < 2:
        return {}
    names = {name for _, sample in samples for name in sample}
    growth = {name: slope_per_hour([(t, sample.get(name, 0)) for t, sample in samples]) / 2**20 for name in names}
    return {name: round(g, 1) for name, g in sorted(growth.items(), key=lambda kv: -abs(kv[1]))[:top]}


def settings(tmp_path: Path, name: str) -> tuple[float, Path, tuple[float, float], float]:
    """Duration, run directory, kill interval (s) and sampling period (s) from the environment."""
    low, high = map(float, os.environ.get("TREADLE_SOAK_KILL_S", "120-240").split("-"))
    return (float(os.environ.get("TREADLE_SOAK_S", "1800")), Path(os.environ.get("TREADLE_SOAK_DIR", tmp_path / name)),
            (low, high), float(os.environ.get("TREADLE_SOAK_SAMPLE_S", "60")))  # fmt: skip


def stop(driver: subprocess.Popen) -> None:
    driver.send_signal(signal.SIGINT)
    try:
        driver.wait(timeout=120)
    except subprocess.TimeoutExpired:
        for pid in [*descendants(driver.pid), driver.pid]:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_soak_with_worker_kills(tmp_path):
    duration, run_dir, kill_every, sample_every = settings(tmp_path, "soak")
    rng = random.Random(0)
    driver = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=1000000",
         "train.eval_every=0", "train.checkpoint_every=50", "train.dashboard=false", f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    start = time.monotonic()
    next_kill = start + rng.uniform(*kill_every)
    next_sample = start + sample_every
    kills, by_process, resident = 0, [], []
    try:
        while time.monotonic() - start < duration:
            assert driver.poll() is None, "the training run ended by itself"
            now = time.monotonic()
            if now >= next_kill and (pid := actor_pid(driver.pid, "RolloutActor")) is not None:
                os.kill(pid, signal.SIGKILL)
                kills += 1
                next_kill = now + rng.uniform(*kill_every)
            if now >= next_sample:
                pids = [driver.pid, *descendants(driver.pid)]
                by_process.append((now - start, memory_by_process(driver.pid, pids)))
                resident.append((now - start, resident_bytes(pids)))
                next_sample = now + sample_every
            time.sleep(1)
    finally:
        stop(driver)

    # The killed worker's memory is a saw (it starts again from nothing after every kill),
    # which a straight line through the total misreads: the processes that live through
    # the run, on their own.
    summary, trained, last = close_soak(run_dir, duration, by_process, lambda name: "RolloutActor" not in name)
    summary = {**summary, "worker_kills": kills,
               # The figure the first soak reported, for comparison.
               "rss_sum_growth_mb_per_hour_second_half": second_half_growth_mb_per_hour(resident)}  # fmt: skip
    write_summary(run_dir, summary, by_process)
    assert summary["lost"] == 0 and len(trained) == summary["consumed"]
    assert kills >= 1 and last["worker_restarts"] >= kills - 1  # the last kill may land after the last step


@pytest.mark.slow
def test_soak_across_nodes_with_node_kills(tmp_path):
    duration, run_dir, kill_every, sample_every = settings(tmp_path, "soak-nodes")
    rng = random.Random(0)
    cluster = LoopbackCluster(head_resources='{"learner": 1}', prefix="tsk-")
    try:
        for name in ("w1", "w2"):
            cluster.add_worker(name, '{"rollout": 1}')
        driver = cluster.train(run_dir, "train.steps=1000000", "train.checkpoint_every=50",
                               "train.rollout_resources=[rollout=1]", "train.learner_resources=[learner=1]",
                               "train.batch_groups=4", "rl.group_size=8", "train.max_new_tokens=256")  # fmt: skip
        start = time.monotonic()
        next_kill, next_sample, back_at = start + rng.uniform(*kill_every), start + sample_every, None
        kills, lost_node, by_process = 0, None, []
        try:
            while time.monotonic() - start < duration:
                assert driver.poll() is None, "the training run ended by itself"
                now = time.monotonic()
                steps = logged_steps(run_dir)
                where = steps[-1]["nodes"].get("rollout-0") if steps else None
                if now >= next_kill and lost_node is None and where:
                    lost_node = where.split("/")[0]
                    cluster.kill_worker(lost_node)
                    kills, back_at = kills + 1, now + 30
                    next_kill = now + rng.uniform(*kill_every)
                if back_at is not None and now >= back_at:
                    cluster.add_worker(lost_node, '{"rollout": 1}')
                    lost_node, back_at = None, None
                if now >= next_sample:
                    by_process.append((now - start, memory_by_node_and_process(driver.pid, cluster)))
                    next_sample = now + sample_every
                time.sleep(1)
        finally:
            stop(driver)
    finally:
        left = cluster.shutdown()

    def lasting(name: str) -> bool:  # the driver's and the head's processes: the worker nodes' are killed
        return name.split(":")[0] in ("driver", "head")

    summary, trained, last = close_soak(run_dir, duration, by_process, lasting)
    summary = {**summary, "node_kills": kills}
    write_summary(run_dir, summary, by_process)
    assert not left, left
    assert summary["lost"] == 0 and len(trained) == summary["consumed"]
    assert set(last["dropped_by_reason"]) <= {"stale", "worker_died"}
    assert kills >= 1 and last["worker_restarts"] >= kills - 1  # the last kill may land after the last step


def memory_by_node_and_process(driver: int, cluster: LoopbackCluster) -> dict[str, int]:
    """PSS bytes summed by "driver" and by NODE:PROCESS over every node of the cluster
    (e.g. "head:raylet", "w1:ray::RolloutActor")."""
    out = {"driver": sum(proportional_bytes(pid) for pid in [driver, *descendants(driver)])}
    for node, pids in cluster.pids_by_node().items():
        for pid in pids:
            name = f"{node}:{process_name(pid).split('.')[0]}"
            out[name] = out.get(name, 0) + proportional_bytes(pid)
    return out


def close_soak(run_dir: Path, duration: float, by_process: list, lasting_process) -> tuple[dict, list, dict]:
    """Check the run's accounting (balanced counters at every step, no episode trained
    twice); (the summary's figures, the trained episode ids, the last step's metrics).
    `lasting_process(name)`: whether a process class lives through the run (not killed)."""
    steps = read_jsonl(run_dir / "train_metrics.jsonl")
    for s in steps:
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"], s["version"]
    trained = [e["episode_id"] for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(trained) == len(set(trained))
    last = steps[-1]
    memory = [(t, sum(sample.values())) for t, sample in by_process]
    lasting = [(t, sum(v for k, v in sample.items() if lasting_process(k))) for t, sample in by_process]
    summary = {
        "seconds": round(duration), "steps": last["version"],
        "worker_restarts": last["worker_restarts"], "restores": last["restores"], "admitted": last["buffer"]["admitted"],
        "consumed": last["buffer"]["consumed"], "dropped": last["dropped_by_reason"],
        "in_flight": last["buffer"]["in_flight"], "buffered": last["buffer"]["buffered"],
        "lost": last["buffer"]["admitted"] - last["buffer"]["consumed"] - last["buffer"]["dropped"]
        - last["buffer"]["in_flight"] - last["buffer"]["buffered"],
        "memory_mb_first": round(memory[0][1] / 2**20) if memory else None,
        "memory_mb_last": round(memory[-1][1] / 2**20) if memory else None,
        "memory_growth_mb_per_hour_second_half": second_half_growth_mb_per_hour(memory),
        "growth_mb_per_hour_second_half_of_lasting_processes": second_half_growth_mb_per_hour(lasting),
        "growth_mb_per_hour_by_process": growth_by_process(by_process[len(by_process) // 2 :]),
    }  # fmt: skip
    return summary, trained, last


def write_summary(run_dir: Path, summary: dict, by_process: list) -> None:
    """RUN/soak_memory.jsonl (each sample, MB by process class) and RUN/soak.json; prints the summary."""
    with (run_dir / "soak_memory.jsonl").open("w") as f:
        for t, sample in by_process:
            f.write(json.dumps({"t": round(t), "pss_mb": {k: round(v / 2**20, 1) for k, v in sample.items()}}) + "\n")
    (run_dir / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
