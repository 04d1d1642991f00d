"""Starting or joining Ray, on loopback unless the user says otherwise.

With RAY_ADDRESS unset, `treadle train` starts a local Ray whose every server (GCS,
raylet, core workers, object manager, dashboard, its agents and the metrics endpoint)
listens on 127.0.0.1 only, with Ray's token authentication left on. With RAY_ADDRESS set
(e.g. under `ray job submit`) it joins that cluster as it is: how a cluster's own nodes
listen is set where the cluster is started (`ray start --node-ip-address=127.0.0.1`; worker
nodes on loopback: actors/ray_node.py). A RAY_ADDRESS on loopback keeps this process's Ray
on loopback too (below), or Ray would look for the cluster at the machine's own address.

Why two settings: `ray.init(_node_ip_address="127.0.0.1")` alone is not enough. Ray
replaces a loopback node address by the machine's own address unless its "clusters on
this OS" switch (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, default on for Linux) is off, and it
reads that switch once, when `ray` is first imported, which in a test session or a
notebook happened long before this call. The switch is therefore set in the environment
(for the processes Ray spawns) and in Ray's already-loaded constant (for this one).
"""
from __future__ import annotations

import os
import sys

LOOPBACK = "127.0.0.1"
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
USAGE_STATS_SWITCH = "RAY_USAGE_STATS_ENABLED"
TASK_EVENTS_KEPT = 10_000


def keep_ray_on_loopback() -> None:
    """Make a Ray started by this process bind its node to 127.0.0.1 only."""
    from ray._private import ray_constants

    os.environ[CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    # No usage report to Ray's servers from the local Ray either: loopback means loopback.
    os.environ.setdefault(USAGE_STATS_SWITCH, "0")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another process may take it before it is used)."""
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def is_loopback_address(address: str) -> bool:
    """Whether a Ray address (`127.0.0.1:6379`, `http://localhost:8265`, ...) names this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in (LOOPBACK, "localhost", "::1")


def start_ray(num_cpus: int, object_store_mb: int, dashboard: bool):
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    if os.environ.get("RAY_ADDRESS"):
        if is_loopback_address(os.environ["RAY_ADDRESS"]):
            keep_ray_on_loopback()  # else Ray would look for the cluster at this machine's own address
        return ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    keep_ray_on_loopback()
    context = ray.init(
        num_cpus=num_cpus,
        object_store_memory=object_store_mb * 1024 * 1024,
        include_dashboard=dashboard,
        dashboard_host=LOOPBACK,
        _node_ip_address=LOOPBACK,
        log_to_driver=True,
        # The GCS keeps the events of this many tasks for the dashboard (Ray's default, 100,000, lets it grow for hours).
        _system_config={"task_events_max_num_task_in_gcs": TASK_EVENTS_KEPT},
    )
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # Ray changed how it picks the address: refuse rather than listen wide
        ray.shutdown()
        raise RuntimeError(f"Ray started on {node_ip}, not on {LOOPBACK}; refusing to run a node that listens there")
    if dashboard and context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url} (loopback only)", file=sys.stderr)
    return context
