"""`treadle data countdown`: write train.parquet and val.parquet of solvable problems."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Flag name -> CountdownConfig field. Flags left out keep the --config's (or default) value.
FLAGS = {
    "numbers": "numbers",
    "max_number": "max_number",
    "target_min": "target_min",
    "target_max": "target_max",
    "train": "num_train",
    "val": "num_val",
    "seed": "seed",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate task data sets")
    tasks = data.add_subparsers(dest="task", required=True, metavar="TASK")
    p = tasks.add_parser(
        "countdown",
        help="solvable Countdown problems (APR's rules) as Parquet",
        description="Write DIR/train.parquet and DIR/val.parquet (columns id, numbers, target). "
        "Defaults are APR's setting (countdown-4); --config takes the task section of an "
        "experiment file, and any flag given overrides it.",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument("--config", metavar="CONFIG", help="experiment YAML whose task section to use")
    p.add_argument("--numbers", type=int, help="numbers per problem (default 4)")
    p.add_argument("--max-number", type=int, help="numbers are drawn from 1 .. max-number - 1 (default 100)")
    p.add_argument("--target-min", type=int, help="smallest target (default 10)")
    p.add_argument("--target-max", type=int, help="largest target (default 100)")
    p.add_argument("--train", type=int, help="training problems (default 500000)")
    p.add_argument("--val", type=int, help="validation problems, never in train (default 1000)")
    p.add_argument("--seed", type=int, help="generator seed (default 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from actors.commands.common import load_experiment
    from configs.typed import build, to_dict
    from reasoning.tasks import TaskConfig, make_task

    settings = to_dict(load_experiment(args.config, []).task.countdown)
    settings.update({field: getattr(args, flag) for flag, field in FLAGS.items() if getattr(args, flag) is not None})
    task = make_task(build(TaskConfig, {"name": "countdown", "countdown": settings}, path="task"))
    generate_files(task, args.out)
    return 0


def generate_files(task, out: Path) -> None:
    """Write out/train.parquet and out/val.parquet of a generator task (countdown)."""
    from tqdm import tqdm

    from actors.errors import UsageError
    from reasoning.tasks import TaskError

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    settings = task.config.countdown
    with tqdm(total=settings.num_train + settings.num_val, unit="problem", file=sys.stderr, disable=None) as bar:
        try:
            train, val = task.generate(progress=bar.update)
        except TaskError as e:
            raise UsageError(str(e)) from None
    for name, problems in (("train", train), ("val", val)):
        tmp = out / f".{name}.parquet.tmp"
        task.write_problems(tmp, problems)
        os.replace(tmp, out / f"{name}.parquet")
    seconds = time.perf_counter() - start
    print(f"wrote {len(train)} train and {len(val)} val problems to {out} in {seconds:.1f} s")
