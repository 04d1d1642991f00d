"""`ray job submit` against a real head node on 127.0.0.1, and the dashboard's metrics.

Starts `ray start --head` on loopback with its own ports, submits a short `treadle train`
job with `--working-dir .`, reads the node's Prometheus endpoint over HTTP until the
`treadle_` gauges appear, checks that every process of the node (the job's actors among
them) listens on loopback only, waits for the job to succeed, and stops the head node.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from actors.ray_setup import free_port
from tests.e2e.processes import command_line, descendants, is_loopback, listening

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ray_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def head_pids(temp_dir: str) -> list[int]:
    """This head node's processes: those whose command lines name its temp dir, and theirs."""
    roots = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if temp_dir in command_line(pid)]
    return sorted({pid for root in roots for pid in [root, *descendants(root)]} - {os.getpid()})


def stop_head(temp_dir: str) -> None:
    """Kill only this head node's processes: `ray stop` would also stop every other Ray on
    the machine, e.g. a training run."""
    for pid in head_pids(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture()
def head_node(tmp_path):
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.fail("the ray CLI is missing from the virtual environment")
    names = ("gcs", "dashboard", "metrics", "agent-listen", "agent-grpc", "client", "runtime-env")
    ports = {name: free_port() for name in names}  # none of Ray's defaults: another Ray may be running
    temp_dir = tempfile.mkdtemp(prefix="ray-job-test-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    started = ray_cli(
        "start", "--head", f"--port={ports['gcs']}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={ports['dashboard']}", f"--metrics-export-port={ports['metrics']}", "--num-cpus=2",
        "--object-store-memory=300000000", "--disable-usage-stats", f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={ports['agent-listen']}", f"--dashboard-agent-grpc-port={ports['agent-grpc']}",
        f"--ray-client-server-port={ports['client']}", f"--runtime-env-agent-port={ports['runtime-env']}", env=env,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    # The job client authenticates with the cluster's token (Ray's token auth stays on).
    client_env = {**env, "RAY_AUTH_MODE": "token"}
    try:
        yield ports, client_env, temp_dir
    finally:
        stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_job_submit_runs_training_and_serves_metrics(head_node, tmp_path):
    ports, env, temp_dir = head_node
    address = f"http://127.0.0.1:{ports['dashboard']}"
    run_dir = tmp_path / "job"
    for _ in range(30):  # the dashboard agent may take a while to come up on a busy machine
        submitted = ray_cli(
            "job", "submit", "--no-wait", f"--address={address}", "--working-dir", ".", "--",
            "treadle", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=6", "train.batch_groups=2",
            "rl.group_size=2", "train.max_new_tokens=128", "train.eval_every=0", f"run_dir={run_dir}",
            env=env,
        )  # fmt: skip
        if "No available agent" not in submitted.stderr:
            break
        time.sleep(2)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job_id = next(w.strip("'") for w in submitted.stdout.split() if w.strip("'").startswith("raysubmit_"))
    metrics_url = f"http://127.0.0.1:{ports['metrics']}/metrics"
    seen: set[str] = set()
    wide: list | None = None  # the head node's sockets beyond loopback, read once the job runs
    status = ""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
            seen |= {line.split("{")[0] for line in text.splitlines() if line.startswith("ray_treadle_")}
        except OSError:
            pass
        if seen and wide is None:  # the job's actors are up: every process of the node listens
            sockets = listening(head_pids(temp_dir))
            assert len(sockets) >= 8, sockets
            wide = [(command_line(pid)[:60], address, port) for pid, address, port in sockets if not is_loopback(address)]
        status = ray_cli("job", "status", f"--address={address}", job_id, env=env).stdout.lower()
        if any(word in status for word in ("succeeded", "failed", "stopped")):
            break
        time.sleep(2)
    logs = ray_cli("job", "logs", f"--address={address}", job_id, env=env).stdout
    assert "succeeded" in status, logs[-3000:]
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert len((run_dir / "train_metrics.jsonl").read_text().splitlines()) == 6
    expected = {
        "ray_treadle_learner_version", "ray_treadle_buffer_admitted_total", "ray_treadle_buffer_dropped_total",
        "ray_treadle_buffer_depth", "ray_treadle_max_token_staleness", "ray_treadle_token_staleness_bucket",
        "ray_treadle_rollout_tokens_per_second", "ray_treadle_rollout_idle_ratio", "ray_treadle_learner_idle_ratio",
        "ray_treadle_learner_step_seconds", "ray_treadle_weight_sync_seconds", "ray_treadle_reward",
        "ray_treadle_batch_accuracy",
    }  # fmt: skip
    assert expected <= seen, sorted(expected - seen)
    assert wide == [], f"the head node listens beyond loopback: {wide}"
