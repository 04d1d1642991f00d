"""`treadle bench engine --device cuda` (benchmarks/engine_gpu.py): its parts, on a CPU.

The GPU run itself needs a GPU (scripts/gpu_check.sh runs it); here the arguments, the
busy-time arithmetic, and the throughput and decode-step measurements on tiny CPU
engines, which run the same code.
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from actors.commands import bench
from benchmarks import engine_gpu
from rollout import EngineConfig, make_engine


def parse(argv):
    parser = argparse.ArgumentParser(prog="treadle")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_cuda_options_parse_and_default_to_the_cpu_run():
    args = parse(["bench", "engine", "--device", "cuda", "--preset", "apr-228m", "--batch", "8", "--new-tokens", "64"])
    assert (args.device, args.preset, args.batch, args.new_tokens, args.decode_kernel) == ("cuda", "apr-228m", 8, 64, "auto")
    args = parse(["bench", "engine"])
    assert (args.device, args.preset, args.batch, args.new_tokens) == ("cpu", None, None, None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_without_a_gpu_the_cuda_run_says_so():
    with pytest.raises(SystemExit, match="torch sees no CUDA GPU"):
        engine_gpu.run()


def event(start, end, name="kernel", device=DeviceType.CUDA, annotation=False):
    return SimpleNamespace(
        device_type=device, is_user_annotation=annotation, name=name, time_range=SimpleNamespace(start=start, end=end)
    )


def test_busy_time_is_the_union_of_kernel_and_copy_intervals():
    events = [
        event(0, 10), event(5, 12), event(20, 25, "Memcpy HtoD (Pageable -> Device)"),  # 0..12 and 20..25
        event(21, 22, "Memset (Device)"),  # inside the copy: counts once
        event(0, 100, "ProfilerStep", annotation=True),  # a span, not work
        event(30, 90, "aten::mm", device=DeviceType.CPU),  # host time
    ]
    assert engine_gpu.device_activity(events) == (12 + 5, 2)


def test_throughput_and_decode_step_figures_on_cpu_engines(tiny, tokenizer, keep_torch_threads):
    torch.set_num_threads(1)  # three engines, three OpenMP teams: on 2 cores they would sleep between ops
    batch, new_tokens = 3, 24
    config = EngineConfig(max_num_seqs=batch, num_kv_blocks=64)
    engines = {name: make_engine(backend, tiny, tokenizer, config if backend == "paged" else EngineConfig(backend="hf"))
               for name, backend in (("paged", "paged"), ("paged_eager", "paged"), ("hf", "hf"))}
    figures = engine_gpu.throughput(engines, tiny.config.vocab_size, batch, new_tokens, repeats=1)
    assert figures["speedup_vs_hf"] == pytest.approx(figures["paged_tokens_per_s"] / figures["hf_tokens_per_s"], rel=0.01)
    assert figures["paged_tokens_per_s_eager"] > 0
    core = engines["paged"].core
    step = engine_gpu.decode_step(core, batch, new_tokens, tiny.config.vocab_size)
    assert step["step_ms"] > 0
    assert (step["gpu_ms"], step["busy_fraction"], step["kernels"], step["replay_ms"]) == (0, None, 0, None)
    assert not core.has_unfinished()  # the measured requests are aborted
    # The warm-up and one timed run of the whole workload, then the decode-step run: its
    # prefill step and WARM + TIMED + PROFILED decode steps, each sampling every row.
    steps = 1 + engine_gpu.WARM_STEPS + engine_gpu.TIMED_STEPS + engine_gpu.PROFILED_STEPS
    assert core.stats().tokens_generated == 2 * batch * new_tokens + batch * steps
    for engine in engines.values():
        engine.close()
    figures.update(
        device="cpu", preset="tiny", dtype="float32", batch=batch, prompt_len=32, new_tokens=new_tokens,
        paged_decode_kernel="cpu", paged_cuda_graphs=0, paged_capture_seconds=0.0,
    )
    figures.update(engine_gpu.step_figures(step, "") | engine_gpu.step_figures(step, "_eager"))
    assert "speedup paged / hf" in engine_gpu.table(figures)
