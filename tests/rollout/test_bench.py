"""`treadle bench engine`: wiring and output shape, on shrunken sizes (the real run is minutes).

The fork figures at the real sizes are checked in test_prefix_cache.py.
"""
from __future__ import annotations

import argparse
import json

import pytest

import benchmarks.engine as bench_engine
from actors.commands import bench
from rollout.kernels.cpu import build

REQUIRED = (
    "paged_tokens_per_s", "hf_tokens_per_s", "speedup_vs_hf", "fork_prefill_tokens",
    "fork_prefill_tokens_without_cache", "fork_kv_blocks", "fork_kv_blocks_without_cache",
)


def parse(argv):
    parser = argparse.ArgumentParser(prog="treadle")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_command_parses_as_designed():
    args = parse(["bench", "engine", "--json", "--repeats", "2"])
    assert (args.benchmark, args.json, args.repeats, args.threads) == ("engine", True, 2, None)
    with pytest.raises(SystemExit):
        parse(["bench", "nonsense"])


def test_a_shrunken_run_prints_a_table_then_one_json_line(monkeypatch, capsys, keep_torch_threads):
    for name, value in dict(BATCH=4, PROMPT_LEN=8, NEW_TOKENS=6, FORK_PREFIX=32, FORK_CHILDREN=2, FORK_NEW_TOKENS=8).items():
        monkeypatch.setattr(bench_engine, name, value)
    assert bench.run(parse(["bench", "engine", "--repeats", "1", "--threads", "1"])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert all(key in figures for key in REQUIRED)
    # The engine's defaults: the C kernels where they build, no torch.compile.
    assert figures["paged_decode_kernel"] == ("cpu" if build.available() is None else "torch")
    assert figures["paged_compile_decode"] is False
    assert any("speedup paged / hf" in line for line in lines[:-1])
    if not bench_engine.vllm_installed():  # with vllm: tests_vllm/test_vllm_bench.py
        assert not any("vllm" in line for line in lines)
    # 2 children of a 32-token prefix, 8 tokens each: 2 shared blocks + 1 own block each,
    # against 2 blocks of 39 KV tokens each without the cache.
    assert (figures["fork_prefill_tokens"], figures["fork_prefill_tokens_without_cache"]) == (0, 64)
    assert (figures["fork_kv_blocks"], figures["fork_kv_blocks_without_cache"]) == (4, 6)
    assert figures["speedup_vs_hf"] == pytest.approx(figures["paged_tokens_per_s"] / figures["hf_tokens_per_s"], rel=0.01)
