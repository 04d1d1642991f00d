"""RUN/report.md: what a training run did, for a person to read at the end.

Held-out accuracy at every evaluation, the last step's figures, where the trained
tokens' staleness fell (from the consumed-episode ledger), and the buffer's
conservation counters with drops by reason; PNG plots under RUN/plots/ embedded in it:
reward and accuracies against step, rollout tokens/s, the per-token staleness histogram,
idle ratios, and for thread modes (apr, parallel) the held-out evaluations' mean total
and critical-path tokens against step. Plain Python and matplotlib (Agg), from the run's
own files, so `treadle report RUN` writes the same report again at any time.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from actors.run_log import LEDGER, METRICS, read_jsonl

REPORT = "report.md"
PLOTS = "plots"
EVALUATIONS = "eval.json"
CONFIG = "config.yaml"


def report_from_files(run_dir: Path) -> Path:
    """Write RUN/report.md again from RUN's files: metrics, ledger, eval.json, config.yaml."""
    return write_report(run_dir)


def write_report(
    run_dir: Path, evaluations: list[dict[str, Any]] | None = None, max_staleness: int | None = None,
    mode: str | None = None,
) -> Path:  # fmt: skip
    """Arguments left out are read from the run's eval.json and config.yaml."""
    if evaluations is None:
        path = run_dir / EVALUATIONS
        evaluations = json.loads(path.read_text()) if path.is_file() else []
    if max_staleness is None or mode is None:
        train = _train_config(run_dir)
        max_staleness = train.get("max_staleness") if max_staleness is None else max_staleness
        mode = train.get("mode") if mode is None else mode
    metrics = _read(run_dir / METRICS)
    ledger = _read(run_dir / LEDGER)
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
    bound = f" (bound {max_staleness})" if max_staleness is not None else ""
    lines += ["", f"## Staleness of trained episodes{bound}", "", "| lag (versions) | episodes |", "|---|---|"]
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
    plots = write_plots(run_dir / PLOTS, metrics, evaluations, thread_mode=mode != "sequential")
    if plots:
        lines += ["", "## Plots"]
        for caption, path in plots:
            lines += ["", f"![{caption}]({path.relative_to(run_dir).as_posix()})"]
    lines += ["", f"Metrics: {METRICS} (one line per step), ledger: {LEDGER}, TensorBoard: tensorboard/, "
              f"evaluations: {EVALUATIONS}, plots: {PLOTS}/, policy: final/, checkpoints: checkpoints/."]  # fmt: skip
    path = run_dir / REPORT
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plots(
    out_dir: Path, metrics: list[dict[str, Any]], evaluations: list[dict[str, Any]], thread_mode: bool = True
) -> list[tuple[str, Path]]:
    """The report's PNGs (those the data allows); (caption, path) of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    steps = [m["version"] for m in metrics]
    written: list[tuple[str, Path]] = []

    def save(fig: Any, ax: Any, name: str, caption: str, xlabel: str = "learner step") -> None:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.set_title(caption)
        fig.tight_layout()
        fig.savefig(out_dir / name)
        plt.close(fig)
        written.append((caption, out_dir / name))

    def figure() -> tuple[Any, Any]:
        return plt.subplots(figsize=(6, 3.5), dpi=110)

    if metrics or evaluations:
        fig, ax = figure()
        if metrics:
            ax.plot(steps, [m["reward"] for m in metrics], label="batch reward")
            ax.plot(steps, [m["accuracy"] for m in metrics], label="batch accuracy", alpha=0.7)
        if evaluations:
            ax.plot([e["step"] for e in evaluations], [e["accuracy"] for e in evaluations], marker="o",
                    label="held-out accuracy (greedy)")  # fmt: skip
        save(fig, ax, "reward.png", "Reward and accuracy")
    if metrics:
        fig, ax = figure()
        ax.plot(steps, [m["rollout_tokens_per_s"] for m in metrics])
        ax.set_ylabel("tokens/s")
        save(fig, ax, "tokens_per_s.png", "Rollout tokens per second")
    staleness: Counter[int] = Counter()
    for m in metrics:
        for lag, count in (m.get("token_staleness") or {}).items():
            staleness[int(lag)] += int(count)
    if staleness:
        fig, ax = figure()
        lags = sorted(staleness)
        ax.bar(lags, [staleness[lag] for lag in lags])
        ax.set_xticks(lags)
        ax.set_ylabel("trained tokens")
        save(fig, ax, "staleness.png", "Per-token staleness", xlabel="lag (policy versions)")
    if metrics:
        fig, ax = figure()
        ax.plot(steps, [m["rollout_idle_ratio"] for m in metrics], label="rollout workers")
        ax.plot(steps, [m["learner_idle_ratio"] for m in metrics], label="learner")
        ax.set_ylim(0, 1)
        ax.set_ylabel("idle share of time")
        save(fig, ax, "idle.png", "Idle ratios")
    token_evals = [e for e in evaluations if "mean_critical_path_tokens" in e]
    if thread_mode and token_evals:
        fig, ax = figure()
        eval_steps = [e["step"] for e in token_evals]
        ax.plot(eval_steps, [e["mean_total_tokens"] for e in token_evals], marker="o", label="total tokens")
        ax.plot(eval_steps, [e["mean_critical_path_tokens"] for e in token_evals], marker="o",
                label="critical-path tokens")  # fmt: skip
        ax.set_ylabel("mean tokens per held-out problem")
        save(fig, ax, "thread_tokens.png", "Total and critical-path tokens")
    return written


def _read(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path) if path.is_file() else []


def _train_config(run_dir: Path) -> dict[str, Any]:
    """The `train` section of RUN/config.yaml as plain data ({} without the file)."""
    import yaml

    path = run_dir / CONFIG
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("train") or {}
