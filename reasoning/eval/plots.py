"""PNG plots of the budget curves (reasoning/eval/curves.py) of one or more evaluations,
each line labelled by its mode and model."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CURVES = {
    "accuracy_vs_context_window": "context window (tokens per thread)",
    "accuracy_vs_total_tokens": "total tokens generated",
    "accuracy_vs_critical_path_tokens": "critical-path tokens (latency)",
}


GENERIC_PARTS = frozenset({"final", "policy", "adapter", "checkpoints"})
"""Directory names a run gives every model (RUN/final, RUN/checkpoints/step-N/policy): a
label names the run instead."""


def model_name(checkpoint: str | Path) -> str:
    """What a model directory is called in a plot: checkpoints/x -> "x", runs/x/final -> "x",
    runs/x/checkpoints/step-20/policy -> "x step-20"."""
    path = Path(checkpoint)
    parts = [p for p in path.parts if p not in GENERIC_PARTS and p != path.anchor]
    if not parts:
        return str(checkpoint)
    if re.fullmatch(r"step-\d+", parts[-1]) and len(parts) > 1:
        return f"{parts[-2]} {parts[-1]}"
    return parts[-1]


def curve_labels(summaries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each evaluation summary under a label of its own, in order: "mode (model)", and
    " #2", " #3" after a label already taken, so that no evaluation hides another."""
    labelled: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        label = base = f"{summary['mode']} ({model_name(summary['checkpoint'])})"
        n = 1
        while label in labelled:
            n += 1
            label = f"{base} #{n}"
        labelled[label] = summary
    return labelled


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
