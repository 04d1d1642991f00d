"""`treadle traces sos|apr --problems FILE --out FILE.parquet`: search traces as episode rows."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "traces",
        help="write symbolic search traces (SoS+ or APR) of Countdown problems",
        description="Solve each problem with the best-first search and write its trace as "
        "rows of the episode table: one row per thread sequence (episode_id, thread_id, "
        "parent_id, role, token_ids, trainable, ...). Settings come from the traces and "
        "tokenizer sections of --config (default: built-in defaults).",
    )
    p.add_argument("kind", choices=["sos", "apr"], help="sequential SoS+ or APR spawn/join")
    p.add_argument("--problems", required=True, type=Path, metavar="FILE", help="problems (.parquet or .jsonl)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output .parquet")
    p.add_argument("--config", metavar="CONFIG", help="experiment YAML")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. traces.max_depth=1")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from actors.commands.common import load_experiment
    from actors.errors import UsageError
    from reasoning.tasks import TaskError, make_task

    config = load_experiment(args.config, [*args.overrides, f"traces.kind={args.kind}"])
    task = make_task(config.task)
    if not hasattr(task, "trace_rows"):
        raise UsageError(f"task.name: the {task.name} task has no solver traces (countdown has)")
    try:
        problems = task.read_problems(args.problems)
    except TaskError as e:
        raise UsageError(str(e)) from None
    stats = write_trace_file(task, problems, config, args.out)
    print(
        f"wrote {stats.num_episodes} {args.kind} episodes ({stats.num_threads} threads, "
        f"{stats.num_tokens:,} tokens) to {args.out}; left out {stats.num_failed} failed "
        f"and {stats.num_too_long} too long"
    )
    return 0


def write_trace_file(task, problems, config, out: Path):
    """The task's solver traces of `problems` as an episode-table file, tokenized by the
    task's own tokenizer (`config.tokenizer`)."""
    from reasoning.episode_table import write_threads

    start = time.perf_counter()
    tokenizer = task.new_tokenizer(config.tokenizer)
    rows, stats = task.trace_rows(problems, config.traces, tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    write_threads(tmp, rows)
    os.replace(tmp, out)
    print(f"traces: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return stats
