"""`treadle traces sos|apr|parallel --problems FILE --out FILE.parquet`: solver traces as episode rows."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "traces",
        help="write solver traces (SoS+, APR or parallel blocks) of a generator task's problems",
        description="Solve each problem with the task's symbolic solver and write its trace as "
        "rows of the episode table: one row per thread sequence (episode_id, thread_id, "
        "parent_id, role, token_ids, trainable, ...). Settings come from the task, traces and "
        "tokenizer sections of --config (default: built-in defaults). Countdown writes all "
        "three kinds; wordmath writes parallel-block traces.",
    )
    p.add_argument(
        "kind", choices=["sos", "apr", "parallel"],
        help="sequential SoS+, APR spawn/join, or parallel blocks (branches continue the parent's context)",
    )  # fmt: skip
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
    kinds = getattr(task, "trace_kinds", ())
    if args.kind not in kinds:
        has = f"writes {', '.join(kinds)} traces" if kinds else "has no solver traces (countdown and wordmath have)"
        raise UsageError(f"traces {args.kind}: the {task.name} task {has}")
    try:
        problems = task.read_problems(args.problems)
        stats = write_trace_file(task, problems, config, args.out)
    except TaskError as e:
        raise UsageError(str(e)) from None
    print(
        f"wrote {stats.num_episodes} {args.kind} episodes ({stats.num_threads} threads, "
        f"{stats.num_tokens:,} tokens) to {args.out}; left out {stats.num_failed} failed "
        f"and {stats.num_too_long} too long"
    )
    return 0


def write_trace_file(task, problems, config, out: Path, tokenizer=None):
    """The task's solver traces of `problems` as an episode-table file, tokenized by
    `tokenizer` (the model's), by default the task's own (`config.tokenizer`)."""
    from reasoning.episode_table import write_threads

    start = time.perf_counter()
    tokenizer = tokenizer or task.new_tokenizer(config.tokenizer)
    rows, stats = task.trace_rows(problems, config.traces, tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    write_threads(tmp, rows)
    os.replace(tmp, out)
    print(f"traces: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return stats
