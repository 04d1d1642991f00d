#!/usr/bin/env bash
# A Ray head node on loopback for `ray job submit` (README: "Ray cluster on this machine").
#
#   scripts/ray_cluster.sh start    start it: every server on 127.0.0.1, usage stats off,
#                                   token authentication on, its files in $TREADLE_RAY_DIR
#   eval "$(scripts/ray_cluster.sh env)"
#                                   the exports that `ray job submit|status|logs|stop` need
#   scripts/ray_cluster.sh token    the token that logs a browser into the dashboard
#   scripts/ray_cluster.sh stop     end this node's processes only (not `ray stop`, which
#                                   ends every Ray on the machine)
#
# Settings (environment): TREADLE_RAY_DIR (default /tmp/treadle-ray: Ray's temp dir, kept
# short for its socket paths), TREADLE_RAY_CPUS (2), and the ports TREADLE_RAY_GCS_PORT
# (6380), TREADLE_RAY_DASHBOARD_PORT (8265), TREADLE_RAY_METRICS_PORT (8095),
# TREADLE_RAY_CLIENT_PORT (10001), TREADLE_RAY_AGENT_LISTEN_PORT (52365),
# TREADLE_RAY_AGENT_GRPC_PORT (52366), TREADLE_RAY_RUNTIME_ENV_PORT (52367).
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

node_pids() {  # the processes whose command line names this node's temp dir, and their children
    local pid
    for pid in $(pgrep -f -- "$DIR/" 2>/dev/null || true); do
        echo "$pid"
        pgrep -P "$pid" 2>/dev/null || true
    done | sort -u
}

case "${1:-}" in
start)
    if [ -n "$(node_pids)" ]; then
        echo "a node with temp dir $DIR is running; stop it first (scripts/ray_cluster.sh stop)" >&2
        exit 1
    fi
    mkdir -p "$DIR"
    echo "$DASHBOARD_PORT" > "$DIR/dashboard_port"
    eval "$(exports)"
    unset RAY_ADDRESS  # `ray start` must not try to join
    ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --disable-usage-stats \
        --num-cpus="${TREADLE_RAY_CPUS:-2}" --temp-dir="$DIR" \
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
env)
    exports
    ;;
token)
    RAY_AUTH_MODE=token ray get-auth-token 2>/dev/null || cat "$TOKEN_FILE"
    ;;
stop)
    pids=$(node_pids)
    if [ -z "$pids" ]; then
        echo "no node with temp dir $DIR is running"
        exit 0
    fi
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 20); do
        pids=$(node_pids)
        [ -z "$pids" ] && break
        sleep 0.5
    done
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    echo "stopped the node with temp dir $DIR"
    ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
