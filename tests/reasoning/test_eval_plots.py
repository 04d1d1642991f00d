"""Plot labels of evaluations: the run's name, not "final"; no evaluation hides another."""
from __future__ import annotations

import pytest

from reasoning.eval.plots import CURVES, curve_labels, model_name, plot_curves


@pytest.mark.parametrize(
    "path, name",
    [
        ("checkpoints/countdown-3-sft-apr", "countdown-3-sft-apr"),
        ("runs/wordmath-parts-sft/final", "wordmath-parts-sft"),
        ("/abs/runs/x/final/adapter", "x"),
        ("runs/x/checkpoints/step-20/policy", "x step-20"),
        ("step-3", "step-3"),
        ("runs/step-up/final", "step-up"),
        ("final", "final"),
        ("/", "/"),
    ],
)
def test_model_name(path, name):
    assert model_name(path) == name


def summary(mode: str, checkpoint: str, accuracy: float = 0.5) -> dict:
    curve = [[16, 0.0], [128, accuracy]]
    return {"mode": mode, "checkpoint": checkpoint, "curves": {key: curve for key in CURVES}}


def test_labels_keep_every_evaluation_in_order():
    first, second, third = (summary("sequential", f"runs/{run}/final") for run in ("a", "b", "a"))
    other = summary("parallel", "checkpoints/p")
    labelled = curve_labels([first, other, second, third])
    assert list(labelled) == ["sequential (a)", "parallel (p)", "sequential (b)", "sequential (a) #2"]
    assert labelled["sequential (a)"] is first and labelled["sequential (a) #2"] is third


def test_plots_are_written_with_a_line_per_evaluation(tmp_path):
    written = plot_curves(curve_labels([summary("apr", "x/final", 0.8), summary("apr", "x/final", 0.6)]), tmp_path)
    assert [p.name for p in written] == [f"{key}.png" for key in CURVES]
    assert all(p.stat().st_size > 1000 for p in written)
