"""A multi-node Ray cluster on this machine's loopback, through scripts/ray_cluster.sh as a user runs it.

`LoopbackCluster` starts a head node and worker nodes (each its own temp dir, ports, object
store and custom resources), runs `treadle train` against it, kills and restarts worker
nodes, and lists every process of every node (for the listening-socket check). The GCS is
told to notice a lost node after about 5 s instead of Ray's 15 s (RAY_health_check_*), so
that node-loss tests stay short. Helpers check a run's accounting the way
tests/e2e/test_faults.py does: balanced counters at every step, every episode trained once.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actors.ray_setup import free_port
from actors.run_log import read_jsonl
from tests.e2e.processes import command_line, descendants, is_loopback, listening, wait_for  # noqa: F401 (for the multi-node tests)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ray_cluster.sh"
PORTS = ("GCS", "DASHBOARD", "METRICS", "CLIENT", "AGENT_LISTEN", "AGENT_GRPC", "RUNTIME_ENV")
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5"}


class LoopbackCluster:
    def __init__(self, head_resources: str = "{}", head_cpus: int = 1, head_store_mb: int = 0, prefix: str = "tmn-"):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths must fit
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update({"PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "TREADLE_RAY_DIR": self.dir,
                    "TREADLE_RAY_CPUS": str(head_cpus), "TREADLE_RAY_RESOURCES": head_resources})
        env.update(FAST_NODE_DEATH)
        if head_store_mb:
            env["TREADLE_RAY_OBJECT_STORE_MB"] = str(head_store_mb)
        env.update({f"TREADLE_RAY_{name}_PORT": str(free_port()) for name in PORTS})  # another Ray may run here
        self.env = env
        self.sh("start")
        exports = self.sh("env").stdout
        self.client_env = {**env, **dict(re.findall(r"^export (\w+)=(\S+)$", exports, re.M))}
        self.gcs_address = f"127.0.0.1:{env['TREADLE_RAY_GCS_PORT']}"

    def sh(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
        output = result.stdout[-2000:] + result.stderr[-2000:]
        assert result.returncode == 0 or not check, f"ray_cluster.sh {' '.join(args)}: {output}"
        return result

    def add_worker(self, name: str, resources: str, store_mb: int = 100) -> None:
        env_store = {"TREADLE_RAY_WORKER_OBJECT_STORE_MB": str(store_mb)}
        self.env.update(env_store)
        self.sh("worker", name, resources)

    def kill_worker(self, name: str) -> None:
        self.sh("kill", name)

    def pids(self) -> list[int]:
        """Every process of every node of the cluster (head and workers)."""
        roots = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if f"{self.dir}/" in command_line(pid)]
        return sorted({pid for root in roots for pid in [root, *descendants(root)]} - {os.getpid()})

    def pids_by_node(self) -> dict[str, list[int]]:
        """The processes of each node: "head", and each worker node by name (its temp dir is
        DIR/nodes/NAME); a raylet's children (its actors) belong to its node."""
        by_node: dict[str, set[int]] = {}
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            line = command_line(pid)
            if pid == os.getpid() or f"{self.dir}/" not in line:
                continue
            found = re.search(rf"{re.escape(self.dir)}/nodes/([A-Za-z0-9_-]+)/", line)
            by_node.setdefault(found.group(1) if found else "head", set()).update([pid, *descendants(pid)])
        return {node: sorted(pids) for node, pids in by_node.items()}

    def wide_sockets(self) -> list[tuple[str, str, int]]:
        """Sockets any process of the cluster listens on beyond loopback (there should be none)."""
        return [(command_line(pid)[:60], address, port) for pid, address, port in listening(self.pids())
                if not is_loopback(address)]  # fmt: skip

    def train(self, run_dir: Path, *overrides: str) -> subprocess.Popen:
        """`treadle train` as a driver joining the cluster (RAY_ADDRESS), in a child process."""
        env = {**self.client_env, "RAY_ADDRESS": self.gcs_address}
        return subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.batch_groups=2",
             "rl.group_size=2", "train.max_new_tokens=64", "train.eval_every=0", *overrides, f"run_dir={run_dir}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def shutdown(self) -> list[int]:
        """Stop every node; the processes still alive after 30 s (there should be none)."""
        self.sh("stop", check=False)
        deadline = time.monotonic() + 30
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.5)
        left = self.pids()
        shutil.rmtree(self.dir, ignore_errors=True)
        return left


def logged_steps(run_dir: Path) -> list[dict]:
    """The steps logged so far (complete lines only: the run may be writing the next one)."""
    metrics = run_dir / "train_metrics.jsonl"
    lines = metrics.read_text().split("\n")[:-1] if metrics.exists() else []
    return [json.loads(line) for line in lines if line]


def assert_counted_once(run_dir: Path, versions: list[int], episodes: int) -> tuple[list[dict], list[dict]]:
    """Steps `versions` in the log with balanced counters at each, `episodes` trained once each;
    (the steps, the ledger's episodes)."""
    steps = read_jsonl(run_dir / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == versions
    for s in steps:
        b = s["buffer"]
        assert b["admitted"] == b["consumed"] + b["dropped"] + b["in_flight"] + b["buffered"], s
    trained = [e for line in read_jsonl(run_dir / "consumed.jsonl") for e in line["episodes"]]
    assert len(trained) == len({e["episode_id"] for e in trained}) == episodes
    return steps, trained


def finish(driver: subprocess.Popen, timeout: float = 400) -> str:
    out, err = driver.communicate(timeout=timeout)
    assert driver.returncode == 0, err[-4000:]
    return err
