"""`treadle eval CONFIG --problems FILE --mode MODE --out DIR`: accuracy and cost of a model.

Runs every problem through the mode's controller on the configured engine
(`engine.backend`) - `sequential` for one-thread models; `apr` (spawn/join) and
`parallel` (parallel blocks) within the `threads` limits; `vote` (cons@k), `short-m@k`,
`prune` and `confidence` over `multipath.k` sampled paths of a sequential model - scores
each output with the task (`task.name`: countdown, math or custom), and writes DIR/summary.json (see
reasoning/eval/harness.py for the fields; `curves` holds APR's budget curves, see
reasoning/eval/curves.py), DIR/results.jsonl (one line a problem, with the output) and a
PNG plot of each curve, with the curves of every `--compare DIR` evaluation beside it. The
model is `eval.checkpoint`, else `model.path`, else <run_dir>/final.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

MODES = ("sequential", "apr", "parallel", "vote", "short-m@k", "prune", "confidence")
"""reasoning.controllers.factory.MODES, spelled out so the CLI starts without importing it (a test keeps them equal)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on held-out problems",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="e.g. eval.checkpoint=DIR")
    p.add_argument("--problems", required=True, type=Path, metavar="FILE", help="problems (.parquet or .jsonl)")
    p.add_argument("--mode", required=True, choices=MODES, help="how the model reasons")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument(
        "--compare", action="append", default=[], type=Path, metavar="DIR",
        help="another evaluation's output directory whose curves are drawn beside this one's (repeatable)",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from actors.errors import UsageError
    from configs.experiment import load_config
    from reasoning.tasks import TaskError, make_task

    config = load_config(args.config, args.overrides)
    checkpoint = eval_checkpoint(config)
    if not (checkpoint / "config.json").is_file():
        raise UsageError(f"{checkpoint}: no model checkpoint (train one, or set eval.checkpoint=DIR or model.path=DIR)")
    task = make_task(config.task)
    try:
        problems = task.read_problems(args.problems)
    except TaskError as e:
        raise UsageError(str(e)) from None
    if config.eval.num_problems:
        problems = problems[: config.eval.num_problems]
    others = []
    for directory in args.compare:
        path = directory / "summary.json"
        if not path.is_file():
            raise UsageError(f"--compare {directory}: no summary.json there")
        other = json.loads(path.read_text())
        if not isinstance(other, dict) or not {"mode", "checkpoint", "curves"} <= set(other):
            raise UsageError(f"--compare {directory}: summary.json is not one that treadle eval wrote")
        others.append(other)
    try:
        summary = evaluate(config, task, checkpoint, problems, args.mode, args.out, others)
    finally:
        task.close()
    print(json.dumps({k: summary[k] for k in ("accuracy", "num_problems", "accuracy_unseen", "num_unseen", "mean_total_tokens")}))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'results.jsonl'}")
    return 0


def eval_checkpoint(config) -> Path:
    """The model to evaluate: eval.checkpoint, else model.path, else <run_dir>/final."""
    from configs.experiment import run_dir

    return Path(config.eval.checkpoint or config.model.path or run_dir(config) / "final")


def evaluate(config, task, checkpoint: Path, problems, mode: str, out: Path, others: Sequence[dict] = ()) -> dict:
    """Run and score every problem, write DIR's files and the plots, with the curves of the
    `others` (earlier evaluations' summaries) beside this one's; the summary."""
    import asyncio

    from tqdm import tqdm

    from actors.errors import UsageError
    from learner.checkpoint import load_trained_keys
    from learner.models import CheckpointError
    from reasoning.controllers.factory import make_controller
    from reasoning.eval.curves import budget_curves
    from reasoning.eval.harness import episode_record, run_all, summarize
    from reasoning.eval.plots import curve_labels, plot_curves
    from rollout.engine import SamplingParams
    from rollout.errors import EngineConfigError, UnsupportedModel
    from rollout.factory import make_engine
    from rollout.tokenizer import TokenizerError, load_tokenizer

    sampling = SamplingParams(max_tokens=config.eval.max_new_tokens, temperature=0.0)
    try:
        trained_keys = load_trained_keys(checkpoint)  # read first: a bad file must not cost the run
        tokenizer = load_tokenizer(checkpoint)
        engine = make_engine(config.engine.backend, checkpoint, tokenizer, config.engine)
    except (CheckpointError, TokenizerError, UnsupportedModel, EngineConfigError) as e:
        raise UsageError(str(e)) from None
    start = time.perf_counter()
    try:
        try:
            controller = make_controller(mode, engine, tokenizer, task, sampling, config.threads, config.multipath)
        except ValueError as e:  # the task's TaskError or the protocol's ThreadTokenError
            raise UsageError(str(e)) from None
        with tqdm(total=len(problems), unit="problem", file=sys.stderr, disable=None) as bar:
            episodes = asyncio.run(run_all(problems, controller.run, config.eval.max_concurrent, bar.update))
    finally:
        engine.close()
    summary = summarize(episodes, trained_keys)
    summary["curves"] = budget_curves(episodes)
    if hasattr(controller, "pass_at_k"):
        summary["k"] = config.multipath.k
        summary["pass_at_k"] = sum(controller.pass_at_k(e) for e in episodes) / len(episodes)
    summary.update(task=task.name, mode=mode, checkpoint=str(checkpoint), backend=config.engine.backend,
                   wall_s=round(time.perf_counter() - start, 2))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (out / "results.jsonl").open("w") as f:
        for episode in episodes:
            f.write(json.dumps(episode_record(episode)) + "\n")
    plot_curves(curve_labels([summary, *others]), out)
    return summary
