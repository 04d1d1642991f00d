"""A worker node of a Ray cluster on this machine's loopback: `ray start --address` for 127.0.0.1.

    python -m actors.ray_node --address 127.0.0.1:6380 --temp-dir /tmp/treadle-ray/nodes/w1 \
        --num-cpus 1 --resources '{"rollout": 1}' --object-store-mb 100

(scripts/ray_cluster.sh `worker` runs it.) Why not `ray start --address`: every server of a
node listens on 127.0.0.1 only when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (actors/ray_setup.py),
and with that switch off `ray start` refuses to add a node to a cluster ("multi-node Ray
clusters are not supported on Windows and OSX"); with it on, Ray rewrites 127.0.0.1 into the
machine's own address and its servers listen on every interface. This module starts the
same node processes `ray start` does (raylet with its object store, dashboard and
runtime-env agents), through the same `ray._private.node.Node` that `ray start` and Ray's
own multi-node test cluster (`ray.cluster_utils.Cluster`) use, with the switch off, so
each node's every socket is on 127.0.0.1. Each node has its own temp dir (its processes
are found by it, e.g. to stop or kill the node), its own ports and object store, and the
custom resources that place treadle's actors on it (train.rollout_resources,
train.learner_resources). On real machines use `ray start --address HEAD:6379` instead.
"""
from __future__ import annotations

import argparse
import json
import sys

from actors.ray_setup import LOOPBACK, free_port, keep_ray_on_loopback


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m actors.ray_node", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--address", required=True, help="the head's GCS address, 127.0.0.1:PORT")
    parser.add_argument("--temp-dir", required=True, help="this node's own Ray temp dir (absolute, short)")
    parser.add_argument("--num-cpus", type=int, default=1)
    parser.add_argument("--num-gpus", type=int, default=0)
    parser.add_argument("--resources", default="{}", help='custom resources as JSON, e.g. \'{"rollout": 2}\'')
    parser.add_argument("--object-store-mb", type=int, default=100)
    parser.add_argument("--node-name", default="", help="shown by `ray status` and in ray.nodes()")
    for port in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port"):
        parser.add_argument(f"--{port}", type=int, default=0, help="0: a free one")
    args = parser.parse_args(argv)
    host = args.address.rsplit(":", 1)[0]
    if host not in (LOOPBACK, "localhost"):
        parser.error(f"--address {args.address}: this starts loopback nodes only; on real machines use `ray start`")
    try:
        args.resources = json.loads(args.resources)
    except json.JSONDecodeError as e:
        parser.error(f"--resources {args.resources!r} is not JSON: {e}")
    if not isinstance(args.resources, dict) or not all(
        isinstance(v, (int, float)) and v >= 0 for v in args.resources.values()
    ):
        parser.error(f"--resources must map names to amounts >= 0, got {args.resources!r}")
    return args


def start_node(args: argparse.Namespace) -> str:
    """Start the node's processes (they outlive this one, as `ray start`'s do); its node id."""
    keep_ray_on_loopback()
    import ray._private.node
    import ray._private.parameter

    params = ray._private.parameter.RayParams(
        node_ip_address=LOOPBACK,
        node_name=args.node_name or LOOPBACK,
        gcs_address=f"{LOOPBACK}:{args.address.rsplit(':', 1)[1]}",
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        resources=args.resources,
        object_store_memory=args.object_store_mb * 1024 * 1024,
        temp_dir=args.temp_dir,
        min_worker_port=0,
        max_worker_port=0,
        node_manager_port=0,
        # The head's dashboard agents already hold Ray's default ports: each node needs its own.
        dashboard_agent_listen_port=args.dashboard_agent_listen_port or free_port(),
        metrics_agent_port=args.dashboard_agent_grpc_port or free_port(),
        runtime_env_agent_port=args.runtime_env_agent_port or free_port(),
        metrics_export_port=args.metrics_export_port or free_port(),
        include_log_monitor=True,
    )
    node = ray._private.node.Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    return node.node_id


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    node_id = start_node(args)
    print(f"worker node {args.node_name or node_id} joined {args.address}: node id {node_id}, "
          f"resources {json.dumps(args.resources)}, temp dir {args.temp_dir}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
