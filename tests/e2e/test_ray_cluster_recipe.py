"""The README's loopback recipe end to end, through scripts/ray_cluster.sh as a user runs it.

start (usage stats off, every server on 127.0.0.1, the token file readable by its owner
only) -> eval "$(scripts/ray_cluster.sh env)" -> `ray job submit` of a short `treadle
train` with an absolute run_dir and a readable submission id -> `ray job status` and
`ray job logs` (which need the exports) -> a second job with a relative run_dir is refused
with the message that says what to do -> stop, which ends this node's processes only.
The job's log has progress lines, absolute paths that exist here, and no error-level line.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from actors.ray_setup import free_port
from tests.e2e.processes import command_line, descendants, is_loopback, listening

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPT = REPO / "scripts" / "ray_cluster.sh"
PORTS = ("GCS", "DASHBOARD", "METRICS", "CLIENT", "AGENT_LISTEN", "AGENT_GRPC", "RUNTIME_ENV")


def node_pids(temp_dir: str) -> list[int]:
    roots = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if f"{temp_dir}/" in command_line(pid)]
    return sorted({pid for root in roots for pid in [root, *descendants(root)]} - {os.getpid()})


def sh(*args: str, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def cluster():
    temp_dir = tempfile.mkdtemp(prefix="rrc-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({"PATH": f"{BIN}:{env['PATH']}", "TREADLE_RAY_DIR": temp_dir})
    env.update({f"TREADLE_RAY_{name}_PORT": str(free_port()) for name in PORTS})  # another Ray may run here
    started = sh("bash", str(SCRIPT), "start", env=env)
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        exports = sh("bash", str(SCRIPT), "env", env=env).stdout
        client = {**env, **dict(re.findall(r"^export (\w+)=(\S+)$", exports, re.M))}
        yield client, temp_dir
    finally:
        stopped = sh("bash", str(SCRIPT), "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        deadline = time.monotonic() + 30
        while node_pids(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = node_pids(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, [command_line(pid)[:80] for pid in left]


def submit(env: dict, submission_id: str, *train_args: str) -> subprocess.CompletedProcess:
    for _ in range(30):  # the dashboard agent may take a while to come up on a busy machine
        result = sh("ray", "job", "submit", "--no-wait", "--working-dir", ".", "--submission-id", submission_id,
                    "--", "treadle", "train", "configs/countdown-3-rl-apr.yaml", *train_args, env=env)  # fmt: skip
        if "No available agent" not in result.stderr:
            return result
        time.sleep(2)
    return result


def wait_for(env: dict, submission_id: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh("ray", "job", "status", submission_id, env=env, timeout=60).stdout.lower()
        if any(word in status for word in ("succeeded", "failed", "stopped")):
            return status
        time.sleep(2)
    return status


def test_the_recipe_runs_a_job_on_a_loopback_node(cluster, tmp_path):
    env, temp_dir = cluster
    assert env["RAY_ADDRESS"].startswith("http://127.0.0.1:") and env["RAY_AUTH_MODE"] == "token"
    token = Path.home() / ".ray" / "auth_token"
    assert token.is_file() and token.stat().st_mode & 0o077 == 0  # the owner's alone
    run_dir = tmp_path / "job"
    submitted = submit(env, "treadle-recipe-test", "train.steps=2", "train.batch_groups=2", "rl.group_size=2",
                       "train.max_new_tokens=64", "train.eval_every=2", "train.eval_problems=8", f"run_dir={run_dir}")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr[-2000:]

    wide = None
    deadline = time.monotonic() + 120
    while wide is None and time.monotonic() < deadline:  # once the job's actors are up, every process listens
        if any(command_line(pid).startswith("ray::RolloutActor") for pid in node_pids(temp_dir)):
            sockets = listening(node_pids(temp_dir))
            wide = [(command_line(pid)[:60], address, port) for pid, address, port in sockets if not is_loopback(address)]
        time.sleep(1)
    dashboards = [pid for pid in node_pids(temp_dir) if "dashboard/dashboard.py" in command_line(pid)]
    assert dashboards and all(b"RAY_USAGE_STATS_ENABLED=0" in Path(f"/proc/{pid}/environ").read_bytes() for pid in dashboards)

    status = wait_for(env, "treadle-recipe-test")
    logs = sh("ray", "job", "logs", "treadle-recipe-test", env=env, timeout=60).stdout
    assert "succeeded" in status, logs[-3000:]
    assert wide == [], f"the node listens beyond loopback: {wide}"
    assert not list(Path(temp_dir).glob("session_*/usage_stats.json"))  # nothing was collected to report
    lines = logs.splitlines()
    assert "step 2/2" in logs and "held-out evaluation at step 2" in logs
    assert not [line for line in lines if " ERROR " in line or re.search(r"\] E ", line) or "Traceback" in line]
    assert max(len(line) for line in lines if line.startswith("step ")) < 300
    final = next(line.split(": ", 1)[1] for line in lines if line.startswith("final: "))
    assert Path(final).is_absolute() and (Path(final) / "model.safetensors").is_file()

    refused = submit(env, "treadle-recipe-relative", "train.steps=1", "run_dir=runs/relative")
    assert refused.returncode == 0, refused.stderr[-2000:]
    assert "failed" in wait_for(env, "treadle-recipe-relative", timeout=120)
    message = sh("ray", "job", "logs", "treadle-recipe-relative", env=env, timeout=60).stdout
    assert "run_dir: runs/relative is relative" in message and "TREADLE_RUNS" in message
