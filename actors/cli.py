"""`treadle`: the command line. Each subcommand lives in actors/commands/<name>.py.

Heavy libraries (torch, transformers, ray) are imported by a subcommand's `run`, never
here, so `treadle --help` and the light subcommands start at once. Errors a user can
fix (a bad config, a missing file) print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys

from actors.commands import bench, config_cmd, dashboard, data, eval_cmd, model, report, sft, traces, train, verify
from actors.errors import UsageError
from configs.typed import ConfigError

COMMANDS = (data, verify, traces, sft, train, eval_cmd, bench, model, config_cmd, dashboard, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treadle",
        description="Asynchronous RL post-training for models that reason in parallel threads.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, UsageError) as e:
        print(f"treadle {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
