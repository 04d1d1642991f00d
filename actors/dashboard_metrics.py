"""Training metrics for Prometheus (and so the Ray dashboard and Grafana), through `ray.util.metrics`.

The driver records one sample per learner step (and one staleness observation per trained
token); the head node's metrics agent serves them on its metrics export port, where
Prometheus scrapes them (`treadle dashboard` writes its scrape configuration and a Grafana
dashboard, actors/commands/dashboard.py). Names start with `treadle_`; Ray exports them
as `ray_treadle_*`, counters with a `_total` suffix. Every series carries a `run` label
(the run directory's name), so one Prometheus tells runs apart.

- Gauges (`GAUGES`): the step's figures (reward, accuracies, loss, timings, ratios, ...)
  and the buffer's depth and in-flight episodes.
- Counters (`COUNTERS`): events since the run began, each added as the per-step
  difference of the run's cumulative count: episodes admitted, consumed and dropped
  (with a `reason` label), rollout worker restarts, learner restores. A counter starts
  at 0 for every label value known in advance (`DROP_REASONS`), as Prometheus advises,
  so a panel reads 0 rather than "no data" until the first drop.
- A histogram: the staleness (version lag) of every trained token.

The counting (`CounterDeltas`, `counter_totals`) is plain Python, tested without Ray.
"""
from __future__ import annotations

from typing import Any

# name: (key in the step metrics, description)
GAUGES = {
    "treadle_learner_version": ("version", "Policy version (learner steps taken)"),
    "treadle_reward": ("reward", "Mean reward of the last training batch"),
    "treadle_batch_accuracy": ("accuracy", "Fraction of correct episodes in the last batch"),
    "treadle_eval_accuracy": ("eval_accuracy", "Greedy accuracy on held-out problems (at the last evaluation)"),
    "treadle_loss": ("loss", "Policy loss of the last learner step"),
    "treadle_entropy": ("entropy", "Mean entropy of the policy on the trained tokens"),
    "treadle_clip_fraction": ("clip_fraction", "Fraction of trained tokens whose ratio was clipped"),
    "treadle_max_token_staleness": ("max_token_staleness", "Largest version lag of a trained token"),
    "treadle_mismatch_kl": ("mismatch_kl", "KL between engine and learner logprobs on trained tokens"),
    "treadle_learner_step_seconds": ("learner_step_s", "Time of one learner update"),
    "treadle_learner_wait_seconds": ("learner_wait_s", "Time the learner waited for a batch"),
    "treadle_weight_sync_seconds": ("weight_sync_s", "Time to publish weights to every worker"),
    "treadle_rollout_tokens_per_second": ("rollout_tokens_per_s", "Tokens the rollout workers generated per second"),
    "treadle_rollout_idle_ratio": ("rollout_idle_ratio", "Share of time rollout workers had no group to generate"),
    "treadle_learner_idle_ratio": ("learner_idle_ratio", "Share of time the learner was not updating"),
    "treadle_buffer_in_flight": ("buffer.in_flight", "Episodes admitted and still being generated"),
    "treadle_buffer_depth": ("buffer.buffered", "Episodes waiting in the buffer"),
}
# name: (key of the run's cumulative count in the step metrics, description)
COUNTERS = {
    "treadle_buffer_admitted": ("buffer.admitted", "Episodes admitted by the stream buffer"),
    "treadle_buffer_consumed": ("buffer.consumed", "Episodes handed to the learner"),
    "treadle_worker_restarts": ("worker_restarts", "Rollout workers that died and were restarted"),
    "treadle_learner_restores": ("restores", "Returns to the last checkpoint after a learner died"),
}
DROPPED = "treadle_buffer_dropped"  # a counter per drop reason (label `reason`)
DROP_REASONS = ("stale", "zero_variance", "worker_died", "resume")  # known in advance: their series start at 0
STALENESS = "treadle_token_staleness"
# Bucket upper bounds for lags 0, 1, 2, ... (Ray wants positive boundaries).
STALENESS_BOUNDARIES = [0.5, 1.5, 2.5, 3.5, 4.5, 8.5, 16.5, 32.5]


def lookup(metrics: dict[str, Any], key: str) -> Any:
    """`metrics["buffer"]["in_flight"]` for key "buffer.in_flight"; None when absent."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def counter_totals(metrics: dict[str, Any]) -> dict[tuple[str, str], float]:
    """The run's cumulative counts in one step's metrics: {(counter name, drop reason or ""): count}."""
    totals = {}
    for name, (key, _) in COUNTERS.items():
        if lookup(metrics, key) is not None:
            totals[(name, "")] = float(lookup(metrics, key))
    for reason, count in (metrics.get("dropped_by_reason") or {}).items():
        totals[(DROPPED, str(reason))] = float(count)
    return totals


class CounterDeltas:
    """What each counter adds at a step: the rise of the run's cumulative count since the
    last step. A count that falls (a learner restore undid steps) adds nothing."""

    def __init__(self, start: dict[str, Any] | None = None):
        # start: the step metrics the loop resumes from, whose counts are already counted.
        self.last = counter_totals(start) if start else {}

    def update(self, metrics: dict[str, Any]) -> dict[tuple[str, str], float]:
        totals = counter_totals(metrics)
        deltas = {key: total - self.last.get(key, 0.0) for key, total in totals.items() if total > self.last.get(key, 0.0)}
        self.last.update(totals)
        return deltas


class DashboardMetrics:
    """The metrics, created once Ray is up; `record(step_metrics)` sets and adds them.

    `run` labels every series; `start` is the last logged step of a resumed run (its
    counts were counted by the process before)."""

    def __init__(self, run: str, start: dict[str, Any] | None = None) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        tags = {"run": run}
        self._gauges = {
            name: (key, Gauge(name, description=doc, tag_keys=("run",)).set_default_tags(tags))
            for name, (key, doc) in GAUGES.items()
        }
        self._counters = {
            name: Counter(name, description=doc, tag_keys=("run",)).set_default_tags(tags)
            for name, (_, doc) in COUNTERS.items()
        }
        dropped = Counter(DROPPED, description="Episodes dropped, by reason", tag_keys=("run", "reason"))
        self._counters[DROPPED] = dropped.set_default_tags(tags)
        self._staleness = Histogram(
            STALENESS,
            description="Versions between a trained token's policy and the learner (one sample per token)",
            boundaries=STALENESS_BOUNDARIES,
            tag_keys=("run",),
        ).set_default_tags(tags)
        # Series known in advance start at 0 (Ray's public `inc` refuses 0, its `_record` takes it).
        for name in COUNTERS:
            self._counters[name]._record(0.0)
        for reason in DROP_REASONS:
            self._counters[DROPPED]._record(0.0, tags={"reason": reason})
        self._deltas = CounterDeltas(start)

    def record(self, metrics: dict[str, Any]) -> None:
        for key, gauge in self._gauges.values():
            value = lookup(metrics, key)
            if value is not None:
                gauge.set(float(value))
        for (name, reason), delta in self._deltas.update(metrics).items():
            self._counters[name].inc(delta, tags={"reason": reason} if reason else None)
        for lag, count in (metrics.get("token_staleness") or {}).items():
            for _ in range(int(count)):
                self._staleness.observe(float(lag))
