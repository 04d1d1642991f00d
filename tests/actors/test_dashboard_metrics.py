"""The `treadle_*` Prometheus metrics (actors/dashboard_metrics.py) and `treadle dashboard`.

Without Ray: the counting is plain Python, and `DashboardMetrics` is run against stand-ins
for ray.util.metrics that remember what was set, added and observed. The real Ray and
Prometheus path is tests/e2e/test_prometheus.py.
"""
from __future__ import annotations

import json
import sys
import types

import pytest
import yaml

from actors.cli import main
from actors.commands import dashboard
from actors.dashboard_metrics import COUNTERS, DROP_REASONS, DROPPED, GAUGES, STALENESS, CounterDeltas, DashboardMetrics


def step(version: int, admitted: int, consumed: int, dropped: dict[str, int], restarts: int = 0) -> dict:
    return {
        "version": version, "reward": 0.5, "accuracy": 0.25, "loss": -0.1, "entropy": 0.9, "clip_fraction": 0.05,
        "mismatch_kl": 1e-4, "max_token_staleness": 1, "learner_step_s": 1.5, "learner_wait_s": 0.2,
        "weight_sync_s": 0.03, "rollout_tokens_per_s": 900.0, "rollout_idle_ratio": 0.4, "learner_idle_ratio": 0.3,
        "token_staleness": {"0": 3, "1": 2},
        "buffer": {"admitted": admitted, "consumed": consumed, "dropped": sum(dropped.values()), "in_flight": 4,
                   "buffered": admitted - consumed - sum(dropped.values()) - 4},
        "dropped_by_reason": dropped, "worker_restarts": restarts, "restores": 0,
    }  # fmt: skip


def test_counter_deltas_add_the_rise_since_the_last_step():
    deltas = CounterDeltas()
    first = deltas.update(step(1, admitted=16, consumed=8, dropped={}))
    assert first == {("treadle_buffer_admitted", ""): 16.0, ("treadle_buffer_consumed", ""): 8.0}
    # 24 - 16 = 8 admitted, 16 - 8 = 8 consumed, 4 stale drops appear, one worker restarted.
    second = deltas.update(step(2, admitted=24, consumed=16, dropped={"stale": 4}, restarts=1))
    assert second == {
        ("treadle_buffer_admitted", ""): 8.0, ("treadle_buffer_consumed", ""): 8.0,
        (DROPPED, "stale"): 4.0, ("treadle_worker_restarts", ""): 1.0,
    }  # fmt: skip
    assert deltas.update(step(3, admitted=24, consumed=16, dropped={"stale": 4}, restarts=1)) == {}


def test_counter_deltas_start_from_a_resumed_runs_counts_and_never_go_down():
    deltas = CounterDeltas(start=step(10, admitted=100, consumed=80, dropped={"stale": 4}))
    assert deltas.update(step(11, admitted=108, consumed=88, dropped={"stale": 4})) == {
        ("treadle_buffer_admitted", ""): 8.0, ("treadle_buffer_consumed", ""): 8.0,
    }  # fmt: skip
    # A learner restore goes back to a checkpoint: the counts fall, nothing is added.
    assert deltas.update(step(9, admitted=90, consumed=72, dropped={"stale": 4})) == {}


def test_a_resumed_loop_counts_from_the_last_step_it_kept(tmp_path):
    """The driver starts the counters from RunLog.last_metrics(): the checkpoint's step, after
    the lines of undone steps are removed."""
    from actors.run_log import METRICS, RunLog

    lines = [step(v, admitted=16 * v, consumed=8 * v, dropped={}) for v in (1, 2, 3)]
    (tmp_path / METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    start = RunLog(tmp_path, resume_version=2, loggers=["jsonl"]).last_metrics()
    assert start["version"] == 2
    # Step 3 is redone: 48 - 32 = 16 admitted, 24 - 16 = 8 consumed since the checkpoint.
    assert CounterDeltas(start).update(lines[2]) == {("treadle_buffer_admitted", ""): 16.0, ("treadle_buffer_consumed", ""): 8.0}
    assert RunLog(tmp_path / "fresh", loggers=["jsonl"]).last_metrics() is None


class _Metric:
    """Stands in for ray.util.metrics.{Gauge, Counter, Histogram}; `log` collects calls."""

    log: list = []

    def __init__(self, name, description="", tag_keys=(), boundaries=None):
        self.name, self.tag_keys, self.default_tags = name, tag_keys, {}

    def set_default_tags(self, tags):
        self.default_tags = dict(tags)
        return self

    def _tags(self, tags):
        final = {**self.default_tags, **(tags or {})}
        assert set(final) == set(self.tag_keys), (self.name, final)
        return tuple(sorted(final.items()))

    def set(self, value, tags=None):
        self.log.append(("set", self.name, self._tags(tags), value))

    def inc(self, value, tags=None):
        assert value > 0
        self.log.append(("inc", self.name, self._tags(tags), value))

    def _record(self, value, tags=None):
        self.log.append(("record", self.name, self._tags(tags), value))

    def observe(self, value, tags=None):
        self.log.append(("observe", self.name, self._tags(tags), value))


@pytest.fixture()
def fake_ray_metrics(monkeypatch):
    module = types.ModuleType("ray.util.metrics")
    module.Gauge = module.Counter = module.Histogram = _Metric
    monkeypatch.setitem(sys.modules, "ray.util.metrics", module)
    _Metric.log = []
    return _Metric.log


def test_record_sets_gauges_adds_counters_and_observes_tokens_all_labelled_with_the_run(fake_ray_metrics):
    log = fake_ray_metrics
    metrics = DashboardMetrics("rl-apr")
    run = ("run", "rl-apr")
    # Every counter and every known drop reason starts at 0.
    zeros = {(name, tags) for kind, name, tags, value in log if kind == "record" and value == 0.0}
    assert {(name, (run,)) for name in COUNTERS} | {(DROPPED, (("reason", r), run)) for r in DROP_REASONS} == zeros
    log.clear()
    metrics.record(step(1, admitted=16, consumed=8, dropped={"stale": 2}))
    sets = {name: value for kind, name, tags, value in log if kind == "set"}
    assert set(sets) == set(GAUGES) - {"treadle_eval_accuracy"}  # no evaluation at this step
    assert sets["treadle_loss"] == -0.1 and sets["treadle_buffer_depth"] == 16 - 8 - 2 - 4
    incs = {(name, tags): value for kind, name, tags, value in log if kind == "inc"}
    assert incs == {("treadle_buffer_admitted", (run,)): 16.0, ("treadle_buffer_consumed", (run,)): 8.0,
                    (DROPPED, (("reason", "stale"), run)): 2.0}  # fmt: skip
    assert sorted(value for kind, name, _, value in log if kind == "observe") == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert all(dict(tags)["run"] == "rl-apr" for _, _, tags, _ in log)


# ---- treadle dashboard ------------------------------------------------------------------

def test_every_metric_has_a_panel_and_every_query_is_filtered_by_run():
    board = dashboard.grafana_dashboard()
    queries = [expr for _, expr in dashboard.panel_queries(board)]
    exported = [f"ray_{name}" for name in GAUGES] + [f"ray_{name}_total" for name in [*COUNTERS, DROPPED]]
    exported.append(f"ray_{STALENESS}_bucket")
    for series in exported:
        assert any(f"{series}{{" in q for q in queries), f"no panel shows {series}"
    assert all('run=~"$run"' in q for q in queries)
    assert any('by (run, reason)' in q for q in queries)  # drops by reason


def test_dashboard_json_has_grafanas_required_fields():
    board = dashboard.grafana_dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int) and board["id"] is None
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in board["panels"]:
        assert panel["type"] in ("timeseries", "heatmap") and panel["title"] and panel["datasource"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["expr"] and t["refId"] and t["datasource"] for t in panel["targets"])
    heatmaps = [panel for panel in board["panels"] if panel["type"] == "heatmap"]
    assert [t["format"] for panel in heatmaps for t in panel["targets"]] == ["heatmap"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["run"]["allValue"] == ".*" and variables["datasource"]["query"] == "prometheus"


def test_dashboard_command_writes_both_files_and_provisions_rays_grafana(tmp_path, capsys):
    temp_dir = tmp_path / "ray"
    session = temp_dir / "session_2026-01-01_00-00-00_000000_1"
    (session / "metrics/grafana/dashboards").mkdir(parents=True)
    (temp_dir / "session_latest").symlink_to(session)
    out = tmp_path / "out"
    assert main(["dashboard", "--out", str(out), "--ray-temp-dir", str(temp_dir), "--scrape-interval", "2s"]) == 0
    config = yaml.safe_load((out / dashboard.PROMETHEUS_FILE).read_text())
    assert config["global"]["scrape_interval"] == "2s"
    job = config["scrape_configs"][0]
    assert job["file_sd_configs"][0]["files"] == [str(temp_dir.resolve() / dashboard.SD_FILE)]
    written = json.loads((out / dashboard.DASHBOARD_FILE).read_text())
    provisioned = session / "metrics/grafana/dashboards" / dashboard.DASHBOARD_FILE
    assert json.loads(provisioned.read_text()) == written == dashboard.grafana_dashboard()
    assert str(provisioned) in capsys.readouterr().out


def test_dashboard_command_with_targets_and_no_ray_session(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["dashboard", "--out", str(out), "--ray-temp-dir", str(tmp_path / "none"), "--target", "127.0.0.1:8080",
            "--target", "127.0.0.1:8081"]  # fmt: skip
    assert main(argv) == 0
    job = yaml.safe_load((out / dashboard.PROMETHEUS_FILE).read_text())["scrape_configs"][0]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8080", "127.0.0.1:8081"]}]
    assert "import the JSON" in capsys.readouterr().err
    assert main(["dashboard", "--out", str(out), "--target", "localhost"]) == 2
