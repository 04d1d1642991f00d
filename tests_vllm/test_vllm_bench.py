"""`treadle bench engine` with vllm installed: the vllm figures and table rows, on
shrunken sizes (the real run takes minutes). Without vllm the default suite checks that
nothing about it is printed (tests/rollout/test_bench.py)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("vllm")

import benchmarks.engine as bench_engine


def test_a_shrunken_run_reports_vllm_beside_paged_and_hf(monkeypatch, capsys):
    import torch

    shrunk = {"BATCH": 4, "PROMPT_LEN": 8, "NEW_TOKENS": 6, "FORK_PREFIX": 32, "FORK_CHILDREN": 2, "FORK_NEW_TOKENS": 8}
    for name, value in shrunk.items():
        monkeypatch.setattr(bench_engine, name, value)
    threads = torch.get_num_threads()
    try:
        assert bench_engine.main(["--repeats", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("vllm_tokens_per_s", "vllm_mixed_tokens_per_s", "speedup_vs_vllm", "paged_tokens_per_s", "hf_tokens_per_s"):
        assert figures[key] > 0, key
    assert figures["speedup_vs_vllm"] == pytest.approx(figures["paged_tokens_per_s"] / figures["vllm_tokens_per_s"], rel=0.01)
    assert any(line.startswith("  vllm ") for line in lines) and any("paged / vllm" in line for line in lines)
