"""`treadle config CONFIG [key=value ...]`: validate an experiment and print the full tree."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "config",
        help="validate an experiment config and print it with every default filled in",
        description="Load CONFIG, apply key.sub=value overrides, validate the whole tree "
        "and print it as YAML. Exits with status 2 and names every bad key otherwise.",
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML file")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from configs.experiment import load_config
    from configs.typed import to_dict

    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0
