"""`treadle bench learner`: wiring, the APR-like mix, and a shrunken run's JSON line.

The shrunken run uses a 512-token head over vocab 4000 (chunks of 64) and 8 threads of a
shortened mix, so it checks that the figures are there and sane (the chunked head uses
well under half the naive one's memory; both layouts train the same tokens), not the
goals at the real sizes, which `treadle bench learner` reports.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import benchmarks.learner as bench_learner
import benchmarks.learner_cuda as bench_learner_cuda
from actors.commands import bench

REQUIRED = (
    "chunked_peak_bytes", "naive_peak_bytes", "memory_ratio", "packed_tokens_per_s",
    "padded_tokens_per_s", "packing_speedup",
)


def parse(argv):
    parser = argparse.ArgumentParser(prog="treadle")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_command_parses_with_the_default_sizes():
    args = parse(["bench", "learner", "--json"])
    assert (args.benchmark, args.json, args.tokens, args.vocab, args.chunk_size) == ("learner", True, 4096, 32000, 1024)
    assert (args.device, args.threads) == ("cpu", 1)
    assert (bench_learner.resolve_sizes(args).rows, args.seq_len) == (4, 512)


def test_cuda_takes_its_own_default_sizes_and_keeps_given_ones():
    args = bench_learner.resolve_sizes(parse(["bench", "learner", "--device", "cuda"]))
    assert (args.device, args.preset, args.rows, args.seq_len, args.steps) == ("cuda", "apr-228m", 16, 4096, 5)
    args = parse(["bench", "learner", "--device", "cuda", "--rows", "2", "--preset", "tiny"])
    args = bench_learner.resolve_sizes(args)
    assert (args.preset, args.rows, args.seq_len) == ("tiny", 2, 4096)


def test_cuda_rows_are_filled_exactly_and_hold_the_same_tokens_as_causal_rows(monkeypatch):
    monkeypatch.setattr(bench_learner_cuda, "SEQUENCE_LENGTHS", (20, 120))
    packed, causal = bench_learner_cuda.full_rows(rows=3, seq_len=300, vocab_size=50, seed=1)
    assert packed.num_tokens == causal.num_tokens == 900 and (packed.segment_ids > 0).all()
    assert packed.num_sequences > 3 and causal.num_sequences == 3 and causal.one_per_row
    assert (packed.input_ids == causal.input_ids).all() and (causal.position_ids == np.arange(300)).all()
    # Each packed sequence restarts its positions at a segment boundary.
    starts = np.diff(packed.segment_ids, axis=1, prepend=0) != 0
    assert (starts == (packed.position_ids == 0)).all()


def test_the_mix_is_episodes_of_a_long_parent_and_short_children():
    threads = bench_learner.apr_like_threads(40, vocab_size=100, seed=0)
    lengths = [len(t) for t in threads]
    assert len(threads) == 40 and all(4 <= i < 100 for t in threads for i in t)
    assert lengths[0] >= 150  # an episode starts with its parent
    parents = [n for n in lengths if n >= 150]
    assert all(150 <= n <= 400 for n in parents) and all(20 <= n <= 80 for n in lengths if n < 150)
    assert 2 * len(parents) <= len(threads) - len(parents) <= 6 * len(parents) + 6


def test_packed_and_padded_micro_batches_hold_the_same_threads():
    threads = [[5] * 30, [6] * 200, [7] * 25, [8] * 40]
    packed, padded = bench_learner.micro_batches(threads, seq_len=256, rows=1)
    # Row of 256: 30 + 200 + 25 fit, 40 does not -> two micro-batches, padded alike.
    assert [tuple(b["input_ids"].shape) for b in packed] == [(1, 256), (1, 256)]
    assert [tuple(b["input_ids"].shape) for b in padded] == [(3, 200), (1, 40)]
    assert sum(int(b["attention_mask"].sum()) for b in padded) == 295
    assert int((padded[0]["labels"] != -100).sum()) == 29 + 199 + 24


def test_a_shrunken_run_prints_a_table_then_one_json_line(monkeypatch, capsys, keep_torch_threads):
    monkeypatch.setattr(bench_learner, "PARENT_LENGTHS", (100, 150))
    monkeypatch.setattr(bench_learner, "CHILD_LENGTHS", (10, 30))
    argv = ["bench", "learner", "--tokens", "512", "--vocab", "4000", "--hidden", "64", "--chunk-size", "64",
            "--sequences", "8", "--seq-len", "256", "--rows", "2", "--repeats", "1"]
    assert bench.run(parse(argv)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert all(key in figures for key in REQUIRED)
    assert any("memory chunked / naive" in line for line in lines[:-1])
    # Naive holds several [512, 4000] fp32 tensors (8 MB each); chunked a few [64, 4000].
    assert figures["naive_peak_bytes"] > 3 * 512 * 4000 * 4
    assert 0 < figures["chunked_peak_bytes"] < 0.5 * figures["naive_peak_bytes"]
    assert figures["memory_ratio"] == pytest.approx(figures["chunked_peak_bytes"] / figures["naive_peak_bytes"], abs=1e-3)
    # 8 threads (shrunken mix): parents of 100-150 and children of 10-30, at most 470
    # tokens, packed into one micro-batch of 2 rows of 256.
    assert figures["num_sequences"] == 8 and figures["micro_batches"] == 1
    assert figures["padded_slots"] > figures["num_tokens"]
    assert figures["packing_speedup"] == pytest.approx(
        figures["packed_tokens_per_s"] / figures["padded_tokens_per_s"], rel=0.01
    )


def test_the_cuda_table_shows_a_layout_that_ran_out_of_memory():
    figures = {
        "preset": "apr-228m", "rows": 16, "seq_len": 4096, "precision": "bf16 autocast, fp32 weights",
        "gradient_checkpointing": False, "sequences": 61, "gpu": "H200",
        "packed_tokens_per_s": 120000.0, "peak_gb": 35.2, "causal_tokens_per_s": 125000.0, "causal_peak_gb": 34.0,
        "dense_mask_tokens_per_s": None, "dense_mask_peak_gb": None, "packed_over_causal": 0.96,
        "logprob_ms": 500.0, "naive_logprob_ms": 507.0,
    }  # fmt: skip
    lines = bench_learner_cuda.table(figures).splitlines()
    assert any("dense mask" in line and "out of memory" in line for line in lines)
    assert any("packed / causal: 0.960" in line for line in lines)
    assert "n/a" in bench_learner_cuda.table({**figures, "causal_tokens_per_s": None, "packed_over_causal": None})
