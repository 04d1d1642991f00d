"""`treadle data countdown|wordmath`: write the train and val problem files of a generator task.

countdown: DIR/train.parquet and DIR/val.parquet of solvable problems. wordmath:
DIR/train.jsonl and DIR/val.jsonl of GSM8K-style word problems (id, question, answer,
structure) and DIR/sft.jsonl, chat SFT examples of the train split.
"""
from __future__ import annotations

import argparse
import json
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
# Flag name -> WordMathConfig field.
WORDMATH_FLAGS = {
    "min_steps": "min_steps",
    "max_steps": "max_steps",
    "min_parts": "min_parts",
    "max_parts": "max_parts",
    "min_part_steps": "min_part_steps",
    "max_factor": "max_factor",
    "max_quantity": "max_quantity",
    "max_value": "max_value",
    "train": "num_train",
    "val": "num_val",
    "seed": "seed",
}
SFT_FILE = "sft.jsonl"


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
    _add_wordmath_parser(tasks)


def _add_wordmath_parser(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        "wordmath",
        help="GSM8K-style word problems (the math task reads them) and chat SFT examples",
        description="Write DIR/train.jsonl and DIR/val.jsonl (columns id, question, answer ending in "
        "'#### N', structure) and DIR/sft.jsonl (chat `messages` of the train problems, answers in "
        "\\boxed{}). Defaults are the CPU setting (configs/wordmath.yaml); --config takes the "
        "task.wordmath section of an experiment file, and any flag given overrides it.",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="output directory (required unless --count)")
    p.add_argument("--config", metavar="CONFIG", help="experiment YAML whose task.wordmath section to use")
    p.add_argument("--min-steps", type=int, help="fewest arithmetic steps of a solution (default 2)")
    p.add_argument("--max-steps", type=int, help="most arithmetic steps of a solution (default 4)")
    p.add_argument("--min-parts", type=int, help="fewest sub-quantities combined (default 1)")
    p.add_argument("--max-parts", type=int, help="most independent sub-quantities combined (default 3)")
    p.add_argument("--min-part-steps", type=int, help="fewest steps every sub-quantity takes, 0 to 2 (default 0)")
    p.add_argument("--max-factor", type=int, help="multipliers and divisors are 2 .. max-factor (default 9)")
    p.add_argument("--max-quantity", type=int, help="other given numbers are 2 .. max-quantity (default 50)")
    p.add_argument("--max-value", type=int, help="every result and answer is 1 .. max-value (default 500)")
    p.add_argument("--train", type=int, help="training problems (default 20000)")
    p.add_argument("--val", type=int, help="validation problems, never in train by key (default 500)")
    p.add_argument("--seed", type=int, help="generator seed (default 0)")
    p.add_argument(
        "--count", action="store_true", help="print how many distinct problems the settings admit; write nothing"
    )
    p.set_defaults(run=run_wordmath)


def run(args: argparse.Namespace) -> int:
    task = _generator_task("countdown", args, FLAGS)
    generate_files(task, args.out)
    return 0


def run_wordmath(args: argparse.Namespace) -> int:
    from actors.errors import UsageError

    if args.out is None and not args.count:
        raise UsageError("treadle data wordmath: --out DIR is required (or --count)")
    task = _generator_task("wordmath", args, WORDMATH_FLAGS)
    print(f"these settings admit {task.count_distinct():,} distinct problems (by template and numbers)")
    if not args.count:
        generate_files(task, args.out)
    return 0


def _generator_task(name: str, args: argparse.Namespace, flags: dict[str, str]):
    """The task `name` with its generator section from --config (or defaults) and the flags given."""
    from actors.commands.common import load_experiment
    from configs.typed import build, to_dict
    from reasoning.tasks import TaskConfig, make_task

    settings = to_dict(getattr(load_experiment(args.config, []).task, name))
    settings.update({field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag) is not None})
    return make_task(build(TaskConfig, {"name": name, name: settings}, path="task"))


def problem_file(task, directory: Path, split: str) -> Path:
    """Where generate_files puts a split: Parquet, unless the task names its own suffix."""
    return directory / f"{split}{getattr(task, 'data_suffix', '.parquet')}"


def generate_files(task, out: Path) -> None:
    """Write the train and val problem files of a generator task (its settings are the config
    section named as the task, e.g. task.countdown) and, when the task makes SFT examples
    (`sft_rows`), out/sft.jsonl of the train problems."""
    from tqdm import tqdm

    from actors.errors import UsageError
    from reasoning.tasks import TaskError

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    settings = getattr(task.config, task.name)
    with tqdm(total=settings.num_train + settings.num_val, unit="problem", file=sys.stderr, disable=None) as bar:
        try:
            train, val = task.generate(progress=bar.update)
        except TaskError as e:
            raise UsageError(str(e)) from None
    for name, problems in (("train", train), ("val", val)):
        path = problem_file(task, out, name)
        tmp = out / f".{name}.tmp{path.suffix}"
        task.write_problems(tmp, problems)
        os.replace(tmp, path)
    seconds = time.perf_counter() - start
    print(f"wrote {len(train)} train and {len(val)} val problems to {out} in {seconds:.1f} s")
    if hasattr(task, "sft_rows"):
        tmp = out / f".{SFT_FILE}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in task.sft_rows(train))
        os.replace(tmp, out / SFT_FILE)
        print(f"wrote {len(train)} SFT examples of the train problems to {out / SFT_FILE}")
