"""benchmarks/logprob_speed.py: the clear exit without CUDA; on a GPU, a small run's figures.

The small run (2,048 tokens, vocab 32,003, hidden 128) checks that every path reports a
time and a peak, that the Triton head holds far less than the full logits, and that the
ratio is naive / Triton; the real sizes' figures come from `python3 -m
benchmarks.logprob_speed`, not from the suite.
"""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import logprob_speed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the exit without CUDA")
def test_main_exits_2_with_a_message_without_cuda(capsys):
    assert logprob_speed.main(["--json"]) == 2
    captured = capsys.readouterr()
    assert "needs a CUDA GPU" in captured.err and captured.out == ""
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        logprob_speed.measure_logprob(tokens=8, vocab=32, hidden=16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton kernels run compiled)")
def test_a_small_run_reports_every_path(capsys):
    assert logprob_speed.main(["--json", "--tokens", "2048", "--vocab", "32003", "--hidden", "128", "--repeats", "2",
                               "--chunk-size", "256"]) == 0  # fmt: skip
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["logprob_out_of_memory"] == []
    for path in logprob_speed.PATHS:
        assert figures[f"{path}_ms"] > 0 and figures[f"{path}_peak_gb"] > 0
    # Full logits: several [2048, 32003] fp32 tensors (262 MB each); Triton: bf16 dz slices of 2048 x 4096.
    assert figures["logprob_peak_gb"] < 0.5 * figures["naive_logprob_peak_gb"]
    assert figures["logprob_speed_ratio"] == pytest.approx(figures["naive_logprob_ms"] / figures["logprob_ms"])
