"""Training metrics for the Ray dashboard (Prometheus, through `ray.util.metrics`).

The driver records one sample per learner step (and one staleness observation per
trained token); the head node's metrics agent serves
them on its metrics export port, where the dashboard's Grafana (or any Prometheus)
reads them. Names start with `treadle_`.
"""
from __future__ import annotations

from typing import Any

GAUGES = {
    "treadle_learner_version": ("version", "Policy version (learner steps taken)"),
    "treadle_reward": ("reward", "Mean reward of the last training batch"),
    "treadle_batch_accuracy": ("accuracy", "Fraction of correct episodes in the last batch"),
    "treadle_eval_accuracy": ("eval_accuracy", "Greedy accuracy on held-out problems"),
    "treadle_max_token_staleness": ("max_token_staleness", "Largest version lag of a trained token"),
    "treadle_mismatch_kl": ("mismatch_kl", "KL between engine and learner logprobs on trained tokens"),
    "treadle_learner_step_seconds": ("learner_step_s", "Time of one learner update"),
    "treadle_learner_wait_seconds": ("learner_wait_s", "Time the learner waited for a batch"),
    "treadle_weight_sync_seconds": ("weight_sync_s", "Time to publish weights to every worker"),
    "treadle_rollout_tokens_per_second": ("rollout_tokens_per_s", "Tokens the rollout workers generated per second"),
    "treadle_rollout_idle_ratio": ("rollout_idle_ratio", "Share of time rollout workers had no group to generate"),
    "treadle_learner_idle_ratio": ("learner_idle_ratio", "Share of time the learner was not updating"),
}
# Bucket upper bounds for lags 0, 1, 2, ... (Ray wants positive boundaries).
STALENESS_BOUNDARIES = [0.5, 1.5, 2.5, 3.5, 4.5, 8.5, 16.5, 32.5]
BUFFER_GAUGES = {
    "treadle_buffer_admitted": ("admitted", "Episodes admitted by the stream buffer"),
    "treadle_buffer_consumed": ("consumed", "Episodes handed to the learner"),
    "treadle_buffer_dropped": ("dropped", "Episodes dropped (stale, aborted, ...)"),
    "treadle_buffer_in_flight": ("in_flight", "Episodes admitted and still being generated"),
    "treadle_buffer_depth": ("buffered", "Episodes waiting in the buffer"),
}


class DashboardMetrics:
    """Gauges created once, after Ray is up; `record(step_metrics)` sets them."""

    def __init__(self) -> None:
        from ray.util.metrics import Gauge, Histogram

        self._gauges = {name: (key, Gauge(name, description=doc)) for name, (key, doc) in GAUGES.items()}
        self._buffer = {name: (key, Gauge(name, description=doc)) for name, (key, doc) in BUFFER_GAUGES.items()}
        self._staleness = Histogram(
            "treadle_token_staleness",
            description="Versions between a trained token's policy and the learner (one sample per token)",
            boundaries=STALENESS_BOUNDARIES,
        )

    def record(self, metrics: dict[str, Any]) -> None:
        for key, gauge in self._gauges.values():
            if metrics.get(key) is not None:
                gauge.set(float(metrics[key]))
        for key, gauge in self._buffer.values():
            gauge.set(float(metrics["buffer"][key]))
        for lag, count in metrics.get("token_staleness", {}).items():
            for _ in range(int(count)):
                self._staleness.observe(float(lag))
