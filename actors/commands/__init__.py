"""One module per `treadle` subcommand: `add_parser(subparsers)` and `run(args) -> int`."""
