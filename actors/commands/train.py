"""`treadle train CONFIG [key=value ...]`: asynchronous RL on Ray.

Starts a local Ray on 127.0.0.1 when RAY_ADDRESS is unset, or joins the cluster it names
(as under `ray job submit`). The whole config is validated before Ray starts.
"""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="asynchronous RL: rollout workers, a staleness-bounded buffer and a learner on Ray",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML, e.g. configs/countdown-3-rl-apr.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="e.g. train.steps=5")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from actors.driver import run_training
    from configs.experiment import load_config, run_dir

    config = load_config(args.config, args.overrides)
    result = run_training(config, run_dir(config))
    print(json.dumps(result))
    print(f"metrics: {result['metrics']}; final policy: {result['final']}")
    return 0
