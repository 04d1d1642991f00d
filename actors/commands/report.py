"""`treadle report RUN_DIR`: write RUN_DIR/report.md again, with its PNG plots, from the run's files.

Reads RUN_DIR/train_metrics.jsonl (one line per learner step), consumed.jsonl (the
ledger), eval.json (held-out evaluations) and config.yaml (the staleness bound and the
reasoning mode), as `treadle train` leaves them; works on a run that is still going or
was stopped. Writes RUN_DIR/report.md and RUN_DIR/plots/*.png: reward and accuracies,
rollout tokens/s, the per-token staleness histogram, idle ratios, and for thread modes
total and critical-path tokens against step.
"""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a training run's report.md with PNG plots from its files",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `treadle train` run directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actors.errors import UsageError
    from actors.report import report_from_files
    from actors.run_log import METRICS

    run_dir = Path(args.run_dir)
    if not (run_dir / METRICS).is_file():
        raise UsageError(f"{run_dir / METRICS}: missing; {run_dir} is not a treadle train run directory")
    path = report_from_files(run_dir)
    print(f"report: {path.resolve()}")
    return 0
