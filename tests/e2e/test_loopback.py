"""A local Ray started by treadle listens on loopback only, with token authentication on.

The child process imports ray before starting it, as a test session or a notebook does:
that is the order in which Ray used to ignore `_node_ip_address="127.0.0.1"` and bind
its node to the machine's address (see actors/ray_setup.py). With an actor running (its
core worker serves gRPC too), every TCP socket that any process of the session listens
on must be on 127.0.0.1 (or its IPv4-mapped IPv6 form), and the dashboard must answer
401 without Ray's token and 200 with it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.processes import command_line, descendants, is_loopback, listening, process_name

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
import ray
from actors.ray_setup import start_ray

context = start_ray(num_cpus=1, object_store_mb=80, dashboard=True)

@ray.remote(num_cpus=0)
class Echo:
    def ping(self):
        return "pong"

echo = Echo.remote()
assert ray.get(echo.ping.remote()) == "pong"
print("ready", context.dashboard_url, flush=True)
sys.stdin.readline()
"""


def http_status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def ray_token() -> str:
    return os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()


def test_a_local_ray_listens_on_loopback_only_and_asks_for_its_token():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        line = child.stdout.readline()
        assert line.startswith("ready "), child.stderr.read()[-3000:] if child.poll() is not None else line
        dashboard = line.split()[1]
        assert dashboard.startswith("127.0.0.1:")

        pids = [child.pid, *descendants(child.pid)]
        sockets = listening(pids)
        owners = {process_name(pid) for pid, _, _ in sockets}
        # Enough of Ray is seen for the check to mean something: its servers and the actor's.
        assert {"gcs_server", "raylet", "ray::Echo"} <= owners, owners
        assert len(sockets) >= 8, sockets
        wide = [(command_line(pid)[:60], address, port) for pid, address, port in sockets if not is_loopback(address)]
        assert wide == [], f"listening beyond loopback: {wide}"

        assert http_status(f"http://{dashboard}/api/version") == 401  # token authentication is on
        assert http_status(f"http://{dashboard}/api/version", ray_token()) == 200
    finally:
        child.communicate("\n", timeout=60)
