"""`treadle bench async`: the same RL run synchronous (eta = 0) and asynchronous (eta = 2).

Both runs go through the one training loop (actors/driver.py) with the same config,
model, problems (group g samples problem g) and number of learner steps, one after the
other on one local Ray; only `train.max_staleness` differs. At eta = 0 the rollout worker
may only generate the next batch after the learner published the weights the batch will
be trained against, so rollout and learning alternate; at eta = 2 the worker runs up to
two versions ahead and the two overlap.

samples/s = episodes trained / wall time of the loop (from the start of generation, after
the initial evaluation, to the last weight publication; the final evaluation is outside
it). Both runs go without the Ray dashboard (`train.dashboard=false`, unless an override
says otherwise): its processes would take CPU from the two actors that work, and the
synchronous run, which leaves a core idle, would hide that cost.
Final accuracy is greedy, on `--eval-problems` held-out problems, after the last step.

What the ratio can be: in the synchronous run the learner waits for each batch while the
worker generates it (`learner_wait_s`), then steps and publishes (`learner_step_s` +
`weight_sync_s`), one after the other. With g and l their means over the run's steps,
perfect overlap would run one step in max(g, l) instead of g + l, so
`ideal_speedup` = (g + l) / max(g, l) and `overlap_efficiency` = speedup / ideal_speedup
(1.0: the asynchronous run hid all it could; the first step, which has nothing to overlap
with, is left out of both means).
`max_token_staleness` is the largest version lag of any trained token of the async run
(it must not exceed 2). Each run keeps its directory (metrics, ledger, checkpoints).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

CONFIG = "configs/countdown-3-rl-apr.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--config", default=CONFIG, help=f"experiment YAML (default {CONFIG})")
    parser.add_argument("--steps", type=int, default=20, help="learner steps per run (default 20)")
    parser.add_argument("--eta", type=int, default=2, help="max staleness of the asynchronous run (default 2)")
    parser.add_argument("--eval-problems", type=int, default=200, help="held-out problems for the final accuracy")
    parser.add_argument("--out", type=Path, default=None, help="keep the two run directories here")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides for both runs")


def report(args: argparse.Namespace) -> int:
    out = args.out or Path(tempfile.mkdtemp(prefix="treadle-bench-async-"))
    figures = run(args.config, args.overrides, args.steps, args.eta, args.eval_problems, out)
    if not args.json:
        for name in ("sync", "async"):
            print(f"{name}: {figures[name + '_samples_per_s']:.2f} samples/s, final accuracy "
                  f"{figures[name + '_final_accuracy']:.3f} (run in {out / name})")  # fmt: skip
    print(json.dumps(figures))
    return 0


def run(config_path: str, overrides: list[str], steps: int, eta: int, eval_problems: int, out: Path) -> dict:
    from actors.driver import run_training
    from actors.run_log import read_jsonl
    from configs.experiment import load_config

    figures: dict = {"steps": steps, "eta": eta}
    for name, staleness in (("sync", 0), ("async", eta)):
        run_dir = out / name
        config = load_config(config_path, [
            "train.dashboard=false", *overrides, f"train.steps={steps}", f"train.max_staleness={staleness}", f"train.eval_every={steps}",
            f"train.eval_problems={eval_problems}", "train.checkpoint_every=0", f"run_dir={run_dir}",
        ])  # fmt: skip
        result = run_training(config, run_dir)
        metrics = read_jsonl(run_dir / "train_metrics.jsonl")
        figures[f"{name}_samples_per_s"] = round(metrics[-1]["buffer"]["consumed"] / metrics[-1]["elapsed_s"], 3)
        figures[f"{name}_final_accuracy"] = result["evaluations"][-1]["accuracy"]
        figures[f"{name}_initial_accuracy"] = result["evaluations"][0]["accuracy"]
        figures[f"{name}_rollout_idle_ratio"] = metrics[-1]["rollout_idle_ratio"]
        figures[f"{name}_learner_idle_ratio"] = metrics[-1]["learner_idle_ratio"]
        if name == "sync":
            figures.update(ideal_speedup(metrics))
        if name == "async":
            figures["max_token_staleness"] = max(m["max_token_staleness"] for m in metrics)
            figures["dropped_stale"] = metrics[-1]["dropped_by_reason"].get("stale", 0)
    figures["speedup"] = round(figures["async_samples_per_s"] / figures["sync_samples_per_s"], 3)
    figures["overlap_efficiency"] = round(figures["speedup"] / figures["ideal_speedup"], 3)
    return figures


def ideal_speedup(sync_metrics: list[dict]) -> dict:
    """Generation and learner seconds per step of a synchronous run, and the speedup that
    perfect overlap of the two would give (see the module doc)."""
    steps = sync_metrics[1:] or sync_metrics
    generation = sum(m["learner_wait_s"] for m in steps) / len(steps)
    learner = sum(m["learner_step_s"] + m["weight_sync_s"] for m in steps) / len(steps)
    return {
        "sync_generation_s_per_step": round(generation, 3),
        "sync_learner_s_per_step": round(learner, 3),
        "ideal_speedup": round((generation + learner) / max(generation, learner, 1e-9), 3),
    }
