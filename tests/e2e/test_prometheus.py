"""Every panel of `treadle dashboard`'s Grafana dashboard shows data from a real Prometheus.

Starts Ray's head node on 127.0.0.1 (its own free ports and temp dir, usage stats off;
the fixture of test_ray_job.py), writes the Prometheus configuration and the dashboard with
`treadle dashboard --ray-temp-dir` (so Prometheus finds the node through Ray's
service-discovery file, and the dashboard lands in Ray's Grafana provisioning folder),
starts Prometheus on 127.0.0.1 scraping every second, runs a short `treadle train`
against the cluster (RAY_ADDRESS), and evaluates every PromQL expression of every panel
through Prometheus's HTTP API (/api/v1/query) while it runs, until each has returned
data, with Grafana's variables filled in: `$run` is the run's name, `$__rate_interval`
30s. Also reads the dashboard JSON for Grafana's required fields and checks that
Prometheus listens on loopback only. Stops only what it started.

Needs the `prometheus` binary (Debian's package): skipped without it;
`make test-prometheus` installs it and runs this test.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from actors.commands.dashboard import DASHBOARD_FILE, GRAFANA_DASHBOARDS, PROMETHEUS_FILE, panel_queries
from actors.ray_setup import free_port
from tests.e2e.processes import is_loopback, listening
from tests.e2e.test_ray_job import REPO, head_node  # noqa: F401  (head_node is a fixture)

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is missing (Debian package `prometheus`); `make test-prometheus` installs it and runs this",
)
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval stands for here (scrapes every 1 s)


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    except urllib.error.HTTPError as e:  # 400: not PromQL
        pytest.fail(f"{expr}: {e.read().decode()[:500]}")
    assert body["status"] == "success", body
    return body["data"]["result"]


def fill_variables(expr: str, run: str) -> str:
    # Grafana puts a regex-escaped value into the PromQL string, its backslashes doubled.
    return expr.replace("$run", re.escape(run).replace("\\", "\\\\")).replace("$__rate_interval", RATE_INTERVAL)


def start_prometheus(config: Path, data: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=1h"],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_ready(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"Prometheus not ready in 60 s: {log.read_text()[-3000:]}")


def check_grafana_fields(board: dict) -> None:
    """What Grafana needs to import or provision a dashboard (read from the JSON itself)."""
    assert isinstance(board["title"], str) and board["title"]
    assert isinstance(board["uid"], str) and 0 < len(board["uid"]) <= 40
    assert isinstance(board["schemaVersion"], int)
    assert board["panels"]
    for panel in board["panels"]:
        assert panel["type"] and isinstance(panel["id"], int)
        assert all(isinstance(panel["gridPos"][k], int) for k in ("h", "w", "x", "y")), panel["gridPos"]
        assert panel["datasource"]["type"] == "prometheus"
        for target in panel["targets"]:
            assert target["expr"] and target["refId"] and target["datasource"]["type"] == "prometheus"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "run"} <= variables


def poll_panels(base: str, board: dict, run: str, train: subprocess.Popen, train_log: Path) -> dict[str, list[dict]]:
    """Evaluate every panel query every 2 s while `train` runs and for up to 20 s after (Ray
    exports its metrics every few seconds, and a rate needs two scrapes of the last values),
    until each returned data; {query: its first non-empty result}. Fails on the panels left
    without."""
    pending = {expr: title for title, expr in panel_queries(board)}
    answers: dict[str, list[dict]] = {}
    deadline = time.monotonic() + 420
    while pending and time.monotonic() < deadline:
        if train.poll() is not None:
            deadline = min(deadline, time.monotonic() + 20)
        for expr in list(pending):
            result = query(base, fill_variables(expr, run))
            if result:
                answers[expr] = result
                del pending[expr]
        time.sleep(2)
    assert train.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, train_log.read_text()[-4000:]
    assert not pending, f"panels without data: {sorted(set(pending.values()))}\n{train_log.read_text()[-2000:]}"
    return answers


def check_counts(base: str, run_dir: Path) -> None:
    """The counters add up to the run's own counts (its last train_metrics.jsonl line), and
    the version reached the last step."""
    last = json.loads((run_dir / "train_metrics.jsonl").read_text().splitlines()[-1])
    expected = {"buffer_admitted_total": last["buffer"]["admitted"], "buffer_consumed_total": last["buffer"]["consumed"],
                "learner_version": last["version"]}  # fmt: skip
    seen: dict[str, float] = {}
    for _ in range(15):  # the last scrape may still be on its way
        for name in expected:
            result = query(base, f'max(max_over_time(ray_treadle_{name}{{run="{run_dir.name}"}}[10m]))')
            seen[name] = float(result[0]["value"][1]) if result else -1.0
        if seen == expected:
            return
        time.sleep(1)
    assert seen == expected


def test_every_dashboard_query_returns_data_from_prometheus(head_node, tmp_path):  # noqa: F811
    started = time.monotonic()
    ports, env, temp_dir = head_node
    out = tmp_path / "dashboard"
    written = subprocess.run(
        [sys.executable, "-m", "actors.cli", "dashboard", "--out", str(out), "--ray-temp-dir", temp_dir,
         "--scrape-interval", "1s"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    board = json.loads((out / DASHBOARD_FILE).read_text())
    check_grafana_fields(board)
    provisioned = Path(temp_dir) / GRAFANA_DASHBOARDS / DASHBOARD_FILE
    assert json.loads(provisioned.read_text()) == board  # where Ray's Grafana provisioning reads dashboards

    prometheus_port = free_port()
    base = f"http://127.0.0.1:{prometheus_port}"
    log = tmp_path / "prometheus.log"
    prometheus = start_prometheus(out / PROMETHEUS_FILE, tmp_path / "prometheus-data", prometheus_port, log)
    train = None
    try:
        wait_ready(base, prometheus, log)
        sockets = listening([prometheus.pid])
        assert sockets and all(is_loopback(address) for _, address, _ in sockets), sockets
        run_dir = tmp_path / "prom-run"
        train_env = {**env, "RAY_ADDRESS": f"127.0.0.1:{ports['gcs']}"}
        train_log = tmp_path / "train.log"
        train = subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=8",
             "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=128", "train.eval_every=4",
             "train.eval_problems=8", "train.checkpoint_every=0", f"run_dir={run_dir}"],
            cwd=REPO, env=train_env, stdout=train_log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        answers = poll_panels(base, board, run_dir.name, train, train_log)
        # Ray's file lists the node's metrics export port (scraped) beside the autoscaler's and the
        # dashboard's own endpoints, which a head node without them leaves down.
        up = {t["metric"]["instance"]: t["value"][1] for t in query(base, 'up{job="ray"}')}
        assert up.get(f"127.0.0.1:{ports['metrics']}") == "1", up
        for expr, result in answers.items():  # each series is the run's (the heatmap sums it away)
            assert all(series["metric"].get("run") == run_dir.name for series in result if "le" not in series["metric"])
        drops = next(result for expr, result in answers.items() if "by (run, reason)" in expr)
        assert {"stale", "worker_died"} <= {series["metric"]["reason"] for series in drops}
        check_counts(base, run_dir)
        runs = json.loads(urllib.request.urlopen(f"{base}/api/v1/label/run/values", timeout=10).read())["data"]
        assert run_dir.name in runs  # the dashboard's `run` variable lists it
    finally:
        for process in (train, prometheus):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    print(f"\nPrometheus test: {len(answers)} panel queries returned data; {time.monotonic() - started:.0f} s",
          file=sys.stderr)  # fmt: skip
