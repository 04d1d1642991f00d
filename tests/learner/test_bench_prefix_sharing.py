"""`treadle bench prefix-sharing`: wiring and a shrunken run's JSON line (2 problems, 2 samples)."""
from __future__ import annotations

import argparse
import json

from actors.commands import bench


def test_shrunken_run_prints_the_figures(capsys, keep_torch_threads):
    parser = argparse.ArgumentParser(prog="treadle")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "prefix-sharing", "--json", "--problems", "2", "--samples", "2", "--repeats", "1"])
    assert args.run(args) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["episodes"] == 4 and figures["threads"] > figures["episodes"]  # parallel blocks: several threads each
    # Each branch repeats its parent's context when not shared, so the shared layout runs fewer tokens.
    assert figures["shared_tokens"] < figures["repeated_tokens"]
    assert figures["token_ratio"] == round(figures["shared_tokens"] / figures["repeated_tokens"], 4)
    assert figures["trained_tokens"] > 0 and figures["shared_tokens_per_s"] > 0 and figures["repeated_tokens_per_s"] > 0
