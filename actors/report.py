"""RUN/report.md: what a training run did, for a person to read at the end.

Held-out accuracy at every evaluation, the last step's figures, where the trained
tokens' staleness fell (from the consumed-episode ledger), and the buffer's
conservation counters with drops by reason. Plain Python, from the run's own files.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from actors.run_log import LEDGER, METRICS, read_jsonl

REPORT = "report.md"


def write_report(run_dir: Path, evaluations: list[dict[str, Any]], max_staleness: int) -> Path:
    metrics = read_jsonl(run_dir / METRICS)
    ledger = read_jsonl(run_dir / LEDGER)
    last = metrics[-1] if metrics else {}
    lines = [f"# Training report: {run_dir}", "", "## Held-out accuracy (greedy)", "",
             "| step | accuracy | mean tokens |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {e['step']} | {e['accuracy']:.3f} | {e['mean_total_tokens']:.1f} |" for e in evaluations]
    if len(evaluations) > 1:
        change = 100 * (evaluations[-1]["accuracy"] - evaluations[0]["accuracy"])
        lines += ["", f"Change from step {evaluations[0]['step']} to {evaluations[-1]['step']}: {change:+.1f} points."]
    lags: Counter[int] = Counter()
    for line in ledger:
        for episode in line["episodes"]:
            lags[episode["lag"]] += 1
    lines += ["", f"## Staleness of trained episodes (bound {max_staleness})", "", "| lag (versions) | episodes |", "|---|---|"]
    lines += [f"| {lag} | {n} |" for lag, n in sorted(lags.items())]
    if last:
        buffer = last["buffer"]
        lines += [
            "", "## Last step", "",
            f"- version {last['version']}, {last['elapsed_s']:.0f} s of training; batch reward {last['reward']:.3f}",
            f"- buffer: admitted {buffer['admitted']} = consumed {buffer['consumed']} + dropped {buffer['dropped']} "
            f"+ in flight {buffer['in_flight']} + buffered {buffer['buffered']}; drops by reason {last['dropped_by_reason'] or 'none'}",
            f"- rollout idle {last['rollout_idle_ratio']:.0%}, learner idle {last['learner_idle_ratio']:.0%}",
        ]  # fmt: skip
    lines += ["", f"Metrics: {METRICS} (one line per step), ledger: {LEDGER}, TensorBoard: tensorboard/, "
              "evaluations: eval.json, policy: final/, checkpoints: checkpoints/."]  # fmt: skip
    path = run_dir / REPORT
    path.write_text("\n".join(lines) + "\n")
    return path
