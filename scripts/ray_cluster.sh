#!/usr/bin/env bash
# A Ray cluster on loopback for `ray job submit` (README: "Ray cluster on this machine"):
# a head node, and worker nodes that simulate more machines.
#
#   scripts/ray_cluster.sh start    start the head: every server on 127.0.0.1, usage stats
#                                   off, token authentication on, its files in $TREADLE_RAY_DIR
#   scripts/ray_cluster.sh worker NAME [RESOURCES]
#                                   add a worker node NAME (its own temp dir
#                                   $TREADLE_RAY_DIR/nodes/NAME, ports and object store) with
#                                   custom resources, e.g. '{"rollout": 2}' (actors/ray_node.py)
#   eval "$(scripts/ray_cluster.sh env)"
#                                   the exports that `ray job submit|status|logs|stop` need
#   scripts/ray_cluster.sh token    the token that logs a browser into the dashboard
#   scripts/ray_cluster.sh stop [NAME]
#                                   end the whole cluster's processes, or worker node NAME's
#                                   (not `ray stop`, which ends every Ray on the machine)
#   scripts/ray_cluster.sh kill NAME
#                                   lose worker node NAME: `kill -9` of all its processes at
#                                   once, as when a machine goes down
#
# Settings (environment): TREADLE_RAY_DIR (default /tmp/treadle-ray: Ray's temp dir, kept
# short for its socket paths), TREADLE_RAY_CPUS (2), TREADLE_RAY_RESOURCES (the head's
# custom resources, JSON, default {}), TREADLE_RAY_OBJECT_STORE_MB (Ray's default when
# unset), and the ports TREADLE_RAY_GCS_PORT (6380), TREADLE_RAY_DASHBOARD_PORT (8265),
# TREADLE_RAY_METRICS_PORT (8095), TREADLE_RAY_CLIENT_PORT (10001),
# TREADLE_RAY_AGENT_LISTEN_PORT (52365), TREADLE_RAY_AGENT_GRPC_PORT (52366),
# TREADLE_RAY_RUNTIME_ENV_PORT (52367); for worker nodes TREADLE_RAY_WORKER_CPUS (1) and
# TREADLE_RAY_WORKER_OBJECT_STORE_MB (100); their ports are free ones.
set -euo pipefail

DIR=${TREADLE_RAY_DIR:-/tmp/treadle-ray}
DASHBOARD_PORT=${TREADLE_RAY_DASHBOARD_PORT:-8265}
TOKEN_FILE=${HOME}/.ray/auth_token

exports() {
    cat <<ENV
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE=token
export RAY_ADDRESS=http://127.0.0.1:$(cat "$DIR/dashboard_port" 2>/dev/null || echo "$DASHBOARD_PORT")
ENV
}

node_pids() {  # the processes whose command line names temp dir $1 (default: the head's, which
               # holds the worker nodes' too), and their children (a raylet's are its actors)
    local pid
    for pid in $(pgrep -f -- "${1:-$DIR}/" 2>/dev/null || true); do
        echo "$pid"
        pgrep -P "$pid" 2>/dev/null || true
    done | sort -u
}

stop_pids() {  # TERM, then KILL what is left after 10 s, of the processes node_pids $1 lists
    local pids
    pids=$(node_pids "$1")
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 20); do
        pids=$(node_pids "$1")
        [ -z "$pids" ] && break
        sleep 0.5
    done
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
}

worker_dir() {
    case "${1:-}" in
    '' | *[!A-Za-z0-9_-]*) echo "a worker node's NAME is letters, digits, _ and -; got '${1:-}'" >&2; exit 2 ;;
    esac
    echo "$DIR/nodes/$1"
}

case "${1:-}" in
start)
    if [ -n "$(node_pids)" ]; then
        echo "a node with temp dir $DIR is running; stop it first (scripts/ray_cluster.sh stop)" >&2
        exit 1
    fi
    mkdir -p "$DIR"
    echo "$DASHBOARD_PORT" > "$DIR/dashboard_port"
    echo "${TREADLE_RAY_GCS_PORT:-6380}" > "$DIR/gcs_port"
    eval "$(exports)"
    unset RAY_ADDRESS  # `ray start` must not try to join
    store=()
    [ -n "${TREADLE_RAY_OBJECT_STORE_MB:-}" ] && store=(--object-store-memory="$((TREADLE_RAY_OBJECT_STORE_MB * 1024 * 1024))")
    ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --disable-usage-stats \
        --node-name=head --num-cpus="${TREADLE_RAY_CPUS:-2}" --resources="${TREADLE_RAY_RESOURCES:-{\}}" \
        "${store[@]}" --temp-dir="$DIR" \
        --port="${TREADLE_RAY_GCS_PORT:-6380}" --dashboard-port="$DASHBOARD_PORT" \
        --metrics-export-port="${TREADLE_RAY_METRICS_PORT:-8095}" \
        --ray-client-server-port="${TREADLE_RAY_CLIENT_PORT:-10001}" \
        --dashboard-agent-listen-port="${TREADLE_RAY_AGENT_LISTEN_PORT:-52365}" \
        --dashboard-agent-grpc-port="${TREADLE_RAY_AGENT_GRPC_PORT:-52366}" \
        --runtime-env-agent-port="${TREADLE_RAY_RUNTIME_ENV_PORT:-52367}"
    # Ray writes its token world-readable; only its owner needs it.
    [ -f "$TOKEN_FILE" ] && chmod 600 "$TOKEN_FILE"
    echo
    echo "dashboard: http://127.0.0.1:$DASHBOARD_PORT (log in with: scripts/ray_cluster.sh token)"
    echo "then: eval \"\$(scripts/ray_cluster.sh env)\" and ray job submit --working-dir . -- treadle train ..."
    ;;
worker)
    name=${2:-}
    node_dir=$(worker_dir "$name")
    if [ ! -f "$DIR/gcs_port" ] || [ -z "$(node_pids)" ]; then
        echo "no head node with temp dir $DIR is running; start it first (scripts/ray_cluster.sh start)" >&2
        exit 1
    fi
    if [ -n "$(node_pids "$node_dir")" ]; then
        echo "worker node $name is running; stop it first (scripts/ray_cluster.sh stop $name)" >&2
        exit 1
    fi
    mkdir -p "$node_dir"
    eval "$(exports)"
    python -m actors.ray_node --address="127.0.0.1:$(cat "$DIR/gcs_port")" --temp-dir="$node_dir" \
        --node-name="$name" --resources="${3:-{\}}" --num-cpus="${TREADLE_RAY_WORKER_CPUS:-1}" \
        --object-store-mb="${TREADLE_RAY_WORKER_OBJECT_STORE_MB:-100}"
    ;;
kill)
    node_dir=$(worker_dir "${2:-}")
    pids=$(node_pids "$node_dir")
    if [ -z "$pids" ]; then
        echo "no worker node ${2} is running"
        exit 1
    fi
    kill -KILL $pids 2>/dev/null || true
    echo "killed worker node ${2} ($(echo $pids | wc -w) processes)"
    ;;
env)
    exports
    ;;
token)
    RAY_AUTH_MODE=token ray get-auth-token 2>/dev/null || cat "$TOKEN_FILE"
    ;;
stop)
    target=$DIR
    [ -n "${2:-}" ] && target=$(worker_dir "$2")
    if [ -z "$(node_pids "$target")" ]; then
        echo "no node with temp dir $target is running"
        exit 0
    fi
    stop_pids "$target"
    echo "stopped the node(s) with temp dir $target"
    ;;
*)
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
