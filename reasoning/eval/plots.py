"""PNG plots of the budget curves (reasoning/eval/curves.py) of one or more evaluations."""
from __future__ import annotations

from pathlib import Path
from typing import Any

CURVES = {
    "accuracy_vs_context_window": "context window (tokens per thread)",
    "accuracy_vs_total_tokens": "total tokens generated",
    "accuracy_vs_critical_path_tokens": "critical-path tokens (latency)",
}


def plot_curves(summaries: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per curve, each line one labelled summary; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, xlabel in CURVES.items():
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
        for label, summary in summaries.items():
            points = summary["curves"][key]
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", markersize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{key}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
