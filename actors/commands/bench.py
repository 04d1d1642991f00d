"""`treadle bench NAME [--json]`: side-by-side measurements; the last line is one JSON object.

Benchmarks live in benchmarks/<module>.py, each with `add_arguments(parser)` and
`report(args) -> int`; this module only routes to them. Building the parser imports each
benchmark module for its arguments, so those modules import torch and the engine only
inside `report`, and the CLI still starts at once.
"""
from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "engine": ("benchmarks.engine", "the paged engine against transformers generate, and prefix sharing on a fork"),
    "prune": ("benchmarks.prune", "cons@k against short-m@k, n-gram pruning and confidence stopping at the same k"),
    "async": ("benchmarks.async_rl", "the same RL run synchronous (max staleness 0) and asynchronous (2)"),
    "learner": ("benchmarks.learner", "chunked logprob head memory against full logits, and packed against padded steps"),
    "lora": ("benchmarks.lora", "bytes per weight sync and learner step time, LoRA against full fine-tuning"),
    "prefix-sharing": (
        "benchmarks.prefix_sharing", "learner tokens and speed on parallel-block episodes, prefix-shared against repeated"
    ),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="run a benchmark; the last line printed is JSON")
    names = bench.add_subparsers(dest="benchmark", required=True, metavar="NAME")
    for name, (module, summary) in BENCHMARKS.items():
        p = names.add_parser(name, help=summary, description=summary)
        _module(module).add_arguments(p)
        p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    module, _ = BENCHMARKS[args.benchmark]
    return _module(module).report(args)


def _module(name: str):
    return importlib.import_module(name)
