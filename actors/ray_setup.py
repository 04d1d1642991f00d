"""Starting or joining Ray, on loopback unless the user says otherwise.

With RAY_ADDRESS unset, `treadle train` starts a local Ray whose node, dashboard and
metrics listen on 127.0.0.1 only; with RAY_ADDRESS set (e.g. under `ray job submit`) it
joins that cluster as it is.
"""
from __future__ import annotations

import os


def start_ray(num_cpus: int, object_store_mb: int, dashboard: bool):
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    if os.environ.get("RAY_ADDRESS"):
        return ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return ray.init(
        num_cpus=num_cpus,
        object_store_memory=object_store_mb * 1024 * 1024,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
