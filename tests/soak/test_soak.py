"""Soak (slow; `make test-slow`): asynchronous training with random rollout-worker kills.

Runs `treadle train` for TREADLE_SOAK_S seconds (default 1800), sends `kill -9` to the
rollout worker every 2-4 minutes, samples the memory of the driver and every process
under it each minute, then stops the run with SIGINT. Memory is the proportional set
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


@pytest.mark.slow
def test_soak_with_worker_kills(tmp_path):
    duration = float(os.environ.get("TREADLE_SOAK_S", "1800"))
    run_dir = Path(os.environ.get("TREADLE_SOAK_DIR", tmp_path / "soak"))
    rng = random.Random(0)
    driver = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=1000000",
         "train.eval_every=0", "train.checkpoint_every=50", "train.dashboard=false", f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    start = time.monotonic()
    next_kill = start + rng.uniform(120, 240)
    next_sample = start + 60
    kills, by_process, resident = 0, [], []
    try:
        while time.monotonic() - start < duration:
            assert driver.poll() is None, "the training run ended by itself"
            now = time.monotonic()
            if now >= next_kill and (pid := actor_pid(driver.pid, "RolloutActor")) is not None:
                os.kill(pid, signal.SIGKILL)
                kills += 1
                next_kill = now + rng.uniform(120, 240)
            if now >= next_sample:
                pids = [driver.pid, *descendants(driver.pid)]
                by_process.append((now - start, memory_by_process(driver.pid, pids)))
                resident.append((now - start, resident_bytes(pids)))
                next_sample = now + 60
            time.sleep(1)
    finally:
        driver.send_signal(signal.SIGINT)
        try:
            driver.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for pid in [*descendants(driver.pid), driver.pid]:
                os.kill(pid, signal.SIGKILL)

    steps = read_jsonl(run_dir / "train_metrics.jsonl")
    for s in steps:
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"], s["version"]
    trained = [e["episode_id"] for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(trained) == len(set(trained))
    last = steps[-1]
    memory = [(t, sum(sample.values())) for t, sample in by_process]
    # The killed worker's memory is a saw (it starts again from nothing after every kill),
    # which a straight line through the total misreads: the processes that live through
    # the run, on their own.
    lasting = [(t, sum(v for k, v in sample.items() if "RolloutActor" not in k)) for t, sample in by_process]
    summary = {
        "seconds": round(duration), "steps": last["version"], "worker_kills": kills,
        "worker_restarts": last["worker_restarts"], "admitted": last["buffer"]["admitted"],
        "consumed": last["buffer"]["consumed"], "dropped": last["dropped_by_reason"],
        "in_flight": last["buffer"]["in_flight"], "buffered": last["buffer"]["buffered"],
        "lost": last["buffer"]["admitted"] - last["buffer"]["consumed"] - last["buffer"]["dropped"]
        - last["buffer"]["in_flight"] - last["buffer"]["buffered"],
        "memory_mb_first": round(memory[0][1] / 2**20) if memory else None,
        "memory_mb_last": round(memory[-1][1] / 2**20) if memory else None,
        "memory_growth_mb_per_hour_second_half": second_half_growth_mb_per_hour(memory),
        "growth_mb_per_hour_second_half_without_the_killed_worker": second_half_growth_mb_per_hour(lasting),
        "growth_mb_per_hour_by_process": growth_by_process(by_process[len(by_process) // 2 :]),
        # The figure the first soak reported, for comparison.
        "rss_sum_growth_mb_per_hour_second_half": second_half_growth_mb_per_hour(resident),
    }  # fmt: skip
    with (run_dir / "soak_memory.jsonl").open("w") as f:
        for t, sample in by_process:
            f.write(json.dumps({"t": round(t), "pss_mb": {k: round(v / 2**20, 1) for k, v in sample.items()}}) + "\n")
    (run_dir / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    assert summary["lost"] == 0 and len(trained) == summary["consumed"]
    assert kills >= 1 and last["worker_restarts"] >= kills - 1  # the last kill may land after the last step
