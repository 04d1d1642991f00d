r"""`treadle dashboard --out DIR`: Prometheus and Grafana for treadle's metrics on a Ray cluster.

Writes two files:
  DIR/prometheus.yml                  a scrape configuration for the Ray cluster's metrics
  DIR/treadle_grafana_dashboard.json  a Grafana dashboard with a panel for every treadle_*
                                      metric (actors/dashboard_metrics.py), every query
                                      filtered by its `run` variable (run directory names)

Where Prometheus finds the cluster: Ray writes the metrics endpoints of its nodes to
<ray temp dir>/prom_metrics_service_discovery.json (the temp dir is `ray start --temp-dir`,
/tmp/ray by default, also for the local Ray of `treadle train`), and the scrape
configuration reads that file (Prometheus file service discovery: nodes that join later
are found too). Or name endpoints yourself with --target HOST:PORT (a node's
`ray start --metrics-export-port`), repeated for several.

Grafana: when <ray temp dir>/session_latest/metrics/grafana/dashboards exists (Ray makes
it at each `ray start --head`), the dashboard is copied there too: the folder that the
Grafana provisioning Ray generates reads, so Grafana started with Ray's configuration
  GF_SERVER_HTTP_ADDR=127.0.0.1 grafana server --homepath /usr/share/grafana \
      --config <ray temp dir>/session_latest/metrics/grafana/grafana.ini
shows it in the "Ray" folder as "treadle training" (Ray's data source is Prometheus on
localhost:9090). Run this again after each `ray start`: every session has its own
folder. Anywhere else, import the JSON (Dashboards > New > Import).

Then, for example (everything on 127.0.0.1):
  prometheus --config.file=DIR/prometheus.yml --web.listen-address=127.0.0.1:9090 \
      --storage.tsdb.path=DIR/data
and start the head with RAY_PROMETHEUS_HOST=http://127.0.0.1:9090 (and
RAY_GRAFANA_HOST=http://127.0.0.1:3000) for the Ray dashboard's own charts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PROMETHEUS_FILE = "prometheus.yml"
DASHBOARD_FILE = "treadle_grafana_dashboard.json"
DASHBOARD_UID = "treadle-training"
SD_FILE = "prom_metrics_service_discovery.json"  # Ray's service-discovery file in its temp dir
GRAFANA_DASHBOARDS = Path("session_latest/metrics/grafana/dashboards")  # under the Ray temp dir
DEFAULT_RAY_TEMP_DIR = "/tmp/ray"
SCHEMA_VERSION = 39  # Grafana 10 / 11

RUN = 'run=~"$run"'  # every query's filter: the dashboard's `run` variable (All: every run)
WINDOW = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _gauge(name: str, legend: str = "{{run}}") -> tuple[str, str]:
    return f"max by (run) (ray_{name}{{{RUN}}})", legend


def _rate(name: str, legend: str) -> tuple[str, str]:
    return f"sum by (run) (rate(ray_{name}_total{{{RUN}}}[{WINDOW}]))", legend


# (title, unit, panel type, [(PromQL, legend)], description)
PANELS: list[tuple[str, str, str, list[tuple[str, str]], str]] = [
    ("Rollout tokens/s", "short", "timeseries", [_gauge("treadle_rollout_tokens_per_second")],
     "Tokens the rollout workers generated per second over the last learner step."),
    ("Buffer depth", "short", "timeseries",
     [_gauge("treadle_buffer_depth", "buffered {{run}}"), _gauge("treadle_buffer_in_flight", "in flight {{run}}")],
     "Episodes waiting in the stream buffer, and admitted episodes still being generated."),
    ("Buffer counters (episodes/s)", "short", "timeseries",
     [_rate("treadle_buffer_admitted", "admitted {{run}}"), _rate("treadle_buffer_consumed", "consumed {{run}}"),
      _rate("treadle_buffer_dropped", "dropped {{run}}")],
     "Episodes admitted, handed to the learner and dropped, per second (Prometheus counters)."),
    ("Drops by reason", "short", "timeseries",
     [(f"sum by (run, reason) (increase(ray_treadle_buffer_dropped_total{{{RUN}}}[{WINDOW}]))", "{{reason}} {{run}}")],
     "Episodes dropped in each interval, by reason: stale (over the staleness bound), zero_variance (dynamic "
     "sampling), worker_died, resume."),
    ("Per-token staleness", "short", "heatmap",
     [(f"sum by (le) (increase(ray_treadle_token_staleness_bucket{{{RUN}}}[{WINDOW}]))", "{{le}}")],
     "Trained tokens by version lag (bucket upper bounds 0.5, 1.5, ... are lags 0, 1, ...), per interval."),
    ("Max token staleness", "short", "timeseries", [_gauge("treadle_max_token_staleness")],
     "Largest version lag of a token in the last batch (at most train.max_staleness)."),
    ("Learner step and wait time", "s", "timeseries",
     [_gauge("treadle_learner_step_seconds", "step {{run}}"), _gauge("treadle_learner_wait_seconds", "wait {{run}}")],
     "Time of one learner update, and the time the learner waited for a batch before it."),
    ("Weight-sync latency", "s", "timeseries", [_gauge("treadle_weight_sync_seconds")],
     "Time to publish the new weights to every rollout worker after a step."),
    ("Idle ratios", "percentunit", "timeseries",
     [_gauge("treadle_rollout_idle_ratio", "rollout {{run}}"), _gauge("treadle_learner_idle_ratio", "learner {{run}}")],
     "Share of time the rollout workers had nothing to generate, and the learner was not updating."),
    ("Policy version", "short", "timeseries", [_gauge("treadle_learner_version")], "Learner steps taken."),
    ("Reward", "short", "timeseries", [_gauge("treadle_reward")], "Mean reward of the last training batch."),
    ("Batch and held-out accuracy", "percentunit", "timeseries",
     [_gauge("treadle_batch_accuracy", "batch {{run}}"), _gauge("treadle_eval_accuracy", "held-out {{run}}")],
     "Correct episodes in the last batch; greedy accuracy on held-out problems at the last evaluation."),
    ("Loss", "short", "timeseries", [_gauge("treadle_loss")], "Policy loss of the last learner step."),
    ("Entropy", "short", "timeseries", [_gauge("treadle_entropy")], "Mean policy entropy on the trained tokens."),
    ("Clip fraction", "percentunit", "timeseries", [_gauge("treadle_clip_fraction")],
     "Share of trained tokens whose importance ratio was clipped."),
    ("Mismatch KL", "short", "timeseries", [_gauge("treadle_mismatch_kl")],
     "KL between the engine's and the learner's logprobs of the trained tokens."),
    ("Worker restarts and learner restores", "short", "timeseries",
     [(f"max by (run) (ray_treadle_worker_restarts_total{{{RUN}}})", "worker restarts {{run}}"),
      (f"max by (run) (ray_treadle_learner_restores_total{{{RUN}}})", "learner restores {{run}}")],
     "Rollout workers Ray restarted, and returns to the last checkpoint after a learner died (this process)."),
]  # fmt: skip


def grafana_dashboard() -> dict[str, Any]:
    """The dashboard JSON: two panels a row, a `datasource` and a `run` variable."""
    panels = []
    for i, (title, unit, kind, queries, description) in enumerate(PANELS):
        targets = [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + j), "range": True}
            for j, (expr, legend) in enumerate(queries)
        ]
        panel: dict[str, Any] = {
            "id": i + 1, "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "targets": targets, "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        }  # fmt: skip
        if kind == "heatmap":  # Prometheus buckets, already counted: no recalculation
            for target in targets:
                target["format"] = "heatmap"
            panel["options"] = {"calculate": False, "yAxis": {"unit": "short"}, "cellGap": 1,
                                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64}}  # fmt: skip
        else:
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                                "tooltip": {"mode": "multi", "sort": "none"}}  # fmt: skip
        panels.append(panel)
    run_query = "label_values(ray_treadle_learner_version, run)"
    templating = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "hide": 0,
         "current": {}, "refresh": 1, "regex": "", "includeAll": False, "multi": False},
        {"name": "run", "label": "Run", "type": "query", "datasource": DATASOURCE, "definition": run_query,
         "query": {"query": run_query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}, "refresh": 2,
         "includeAll": True, "multi": True, "allValue": ".*", "sort": 1, "hide": 0,
         "current": {"selected": True, "text": ["All"], "value": ["$__all"]}},
    ]  # fmt: skip
    return {
        "id": None, "uid": DASHBOARD_UID, "title": "treadle training", "tags": ["treadle", "ray"],
        "description": "treadle's asynchronous RL metrics (ray_treadle_*), written by `treadle dashboard`",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1, "timezone": "browser",
        "time": {"from": "now-30m", "to": "now"}, "refresh": "10s", "annotations": {"list": []},
        "templating": {"list": templating}, "panels": panels,
    }  # fmt: skip


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def scrape_config(sd_file: Path | None, targets: list[str], interval: str) -> dict[str, Any]:
    """Prometheus configuration: one `ray` job, from Ray's service-discovery file or fixed targets."""
    job: dict[str, Any] = {"job_name": "ray"}
    if targets:
        job["static_configs"] = [{"targets": targets}]
    else:
        assert sd_file is not None
        job["file_sd_configs"] = [{"files": [str(sd_file)], "refresh_interval": "30s"}]
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": [job]}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="write a Prometheus scrape configuration and a Grafana dashboard for treadle's metrics",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help=f"where to write {PROMETHEUS_FILE} and {DASHBOARD_FILE}")
    p.add_argument(
        "--ray-temp-dir", default=DEFAULT_RAY_TEMP_DIR, metavar="DIR",
        help=f"the Ray cluster's temp dir (ray start --temp-dir; default {DEFAULT_RAY_TEMP_DIR}): Prometheus reads "
        f"its {SD_FILE}, and the dashboard goes into its Grafana provisioning folder",
    )  # fmt: skip
    p.add_argument(
        "--target", action="append", default=[], metavar="HOST:PORT",
        help="scrape this metrics endpoint (a node's --metrics-export-port) instead of Ray's service-discovery file; "
        "repeat for several",
    )  # fmt: skip
    p.add_argument("--scrape-interval", default="5s", metavar="DURATION", help="Prometheus scrape interval (default 5s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from actors.errors import UsageError

    for target in args.target:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UsageError(f"--target {target}: expected HOST:PORT")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(args.ray_temp_dir).expanduser().resolve()
    config = scrape_config(temp_dir / SD_FILE, args.target, args.scrape_interval)
    header = "# Prometheus scrape configuration for a Ray cluster's metrics (ray_treadle_*), by `treadle dashboard`.\n"
    (out / PROMETHEUS_FILE).write_text(header + yaml.safe_dump(config, sort_keys=False))
    text = json.dumps(grafana_dashboard(), indent=2) + "\n"
    (out / DASHBOARD_FILE).write_text(text)
    print(f"Prometheus configuration: {(out / PROMETHEUS_FILE).resolve()}")
    if not args.target and not (temp_dir / SD_FILE).is_file():
        print(f"  note: {temp_dir / SD_FILE} does not exist yet; Prometheus finds the nodes once Ray writes it",
              file=sys.stderr)  # fmt: skip
    print(f"Grafana dashboard: {(out / DASHBOARD_FILE).resolve()}")
    provisioning = temp_dir / GRAFANA_DASHBOARDS
    if provisioning.is_dir():
        provisioned = provisioning.resolve() / DASHBOARD_FILE
        provisioned.write_text(text)
        print(f"  and for Ray's Grafana provisioning: {provisioned}")
    else:
        print(f"  no Ray session under {temp_dir} ({provisioning} is missing): import the JSON into Grafana, or run "
              "this again after `ray start --head`", file=sys.stderr)  # fmt: skip
    return 0
