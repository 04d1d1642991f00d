"""`treadle bench engine --device cuda`: the paged engine on a GPU, against transformers generate.

    treadle bench engine --device cuda [--preset apr-228m] [--batch 256] [--new-tokens 128] [--json]
    (or: python3 -m benchmarks.engine --device cuda --json, from the repository root)

Throughput: the preset (default apr-228m) with fixed-seed random weights in bfloat16,
`--batch` (256) prompts of 32 random token ids, temperature-1 sampling of exactly
`--new-tokens` (128) tokens each (ignore_eos), submitted at once through the Engine
protocol to three engines: `paged` as EngineConfig's defaults have it on a GPU (CUDA
graphs for decode steps), `paged` with cuda_graphs=false (`_eager`), and `hf`
(transformers generate, the whole batch in one call). One untimed run of the whole
workload warms each engine up (cuBLAS and Triton pick their kernels on a first call),
then each runs `--repeats` times, interleaved; the best run counts. `speedup_vs_hf` is
paged (graphs) over hf. Graph capture happens while the engine is built, not timed, and
is reported as `paged_capture_seconds`.

Decode step: the paged core is stepped directly with `--batch` requests admitted and
prefilled, so every measured step decodes one token for each of them. Wall time: the
median of 10 steps, each timed with perf_counter between device synchronisations (a step
ends by copying the sampled tokens to the host anyway). GPU busy time: torch.profiler's
CUDA activity over 5 further steps, as the union of the kernels' and copies' intervals
(so any overlap counts once), per step. `gpu_busy_fraction` = busy / wall, with graphs,
and `gpu_busy_fraction_eager` without; `decode_step_kernels` counts the kernels of one
step (copies and memsets not included). The profiler's own overhead slows the host
side of the profiled steps, which is why the wall time comes from unprofiled steps.
Cross-check: `decode_graph_replay_ms` times the last step's graph alone with CUDA events
over back-to-back replays (same inputs, so the same K/V land in the same slots); the
profiler's `decode_step_gpu_ms` should exceed it only by the step's copies and sampling
(if it is far below, the profiler did not see the kernels inside the graph).

Decode kernel: benchmarks/decode_kernel.py's `measure_decode_kernels(device="cuda")` is
run last and its figures (`decode_kernel_tb_per_s`, ...) merged in.

Goals (issue #18, one H200): speedup_vs_hf >= 5, gpu_busy_fraction >= 0.7. The last
line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from benchmarks.engine import NEW_TOKENS, PROMPT_LEN, build_model, random_prompts, timed_batch, workload

GPU_PRESET, GPU_BATCH = "apr-228m", 256
WARM_STEPS, TIMED_STEPS, PROFILED_STEPS = 3, 10, 5
REPLAYS = 20


def engine_configs(batch: int, new_tokens: int, decode_kernel: str) -> dict:
    from rollout import EngineConfig

    blocks_per_seq = -(-(PROMPT_LEN + new_tokens) // 16)
    paged = dict(
        device="cuda", dtype="bfloat16", decode_kernel=decode_kernel, max_num_seqs=batch, block_size=16,
        max_num_batched_tokens=max(2048, batch * PROMPT_LEN), max_model_len=PROMPT_LEN + new_tokens,
        num_kv_blocks=batch * blocks_per_seq,
    )
    return {
        "paged": EngineConfig(**paged),
        "paged_eager": EngineConfig(**paged, cuda_graphs=False),
        "hf": EngineConfig(backend="hf", device="cuda", dtype="bfloat16", max_num_seqs=batch),
    }


def throughput(engines: dict, vocab_size: int, batch: int, new_tokens: int, repeats: int) -> dict:
    best = {name: float("inf") for name in engines}
    tokens = {}

    async def measure():
        for name, engine in engines.items():  # warm-up: the whole workload once, untimed
            await timed_batch(engine, workload("fixed", vocab_size, seed=0, batch=batch, new_tokens=new_tokens))
        for repeat in range(repeats):
            requests = workload("fixed", vocab_size, seed=1 + repeat, batch=batch, new_tokens=new_tokens)
            for name, engine in engines.items():
                seconds, tokens[name] = await timed_batch(engine, requests)
                best[name] = min(best[name], seconds)

    asyncio.run(measure())
    rates = {name: tokens[name] / best[name] for name in engines}
    return {
        "paged_tokens_per_s": round(rates["paged"], 1),
        "paged_tokens_per_s_eager": round(rates["paged_eager"], 1),
        "hf_tokens_per_s": round(rates["hf"], 1),
        "speedup_vs_hf": round(rates["paged"] / rates["hf"], 2),
        "speedup_vs_hf_eager": round(rates["paged_eager"] / rates["hf"], 2),
        "graphs_over_eager": round(rates["paged"] / rates["paged_eager"], 2),
        "paged_seconds": round(best["paged"], 3),
        "paged_seconds_eager": round(best["paged_eager"], 3),
        "hf_seconds": round(best["hf"], 3),
    }


def decode_step(core, batch: int, new_tokens: int, vocab_size: int) -> dict:
    """Wall and GPU-busy time of one decode step of `batch` rows (see the module docstring).
    A paged core on a CPU runs too (tests); its GPU figures are 0 and None."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from rollout import SamplingParams
    from rollout.requests import Request

    on_gpu = core.runner.device.type == "cuda"

    def synchronize() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    sampling = SamplingParams(max_tokens=new_tokens, temperature=1.0, ignore_eos=True)
    ids = [f"step-{i}" for i in range(batch)]
    for request_id, prompt in zip(ids, random_prompts(batch, PROMPT_LEN, vocab_size, seed=99)):
        core.add_request(Request(request_id, prompt, sampling))
    core.step()  # every prompt's prefill (max_num_batched_tokens holds them all)
    assert not core.scheduler.waiting and len(core.scheduler.running) == batch
    for _ in range(WARM_STEPS):
        core.step()
    walls = []
    for _ in range(TIMED_STEPS):
        synchronize()
        start = time.perf_counter()
        core.step()
        synchronize()
        walls.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * on_gpu) as prof:
        for _ in range(PROFILED_STEPS):
            core.step()
        synchronize()
    assert len(core.scheduler.running) == batch, "a request finished during the measured steps"
    replay_ms = graph_replay_ms(core.runner.cuda_graphs) if on_gpu and core.runner.cuda_graphs else None
    for request_id in ids:
        core.abort_request(request_id)
    busy_us, kernels = device_activity(prof.events())
    wall_ms = statistics.median(walls) * 1e3
    busy_ms = busy_us / 1e3 / PROFILED_STEPS
    return {
        "step_ms": round(wall_ms, 3),
        "gpu_ms": round(busy_ms, 3),
        "busy_fraction": round(busy_ms / wall_ms, 3) if busy_us else None,  # None: the profiler saw no GPU
        "kernels": kernels // PROFILED_STEPS,
        "replay_ms": replay_ms,
    }


def step_figures(step: dict, suffix: str) -> dict:
    """`decode_step`'s figures under their JSON names (`suffix`: "" with graphs, "_eager")."""
    figures = {
        f"decode_step_ms{suffix}": step["step_ms"], f"decode_step_gpu_ms{suffix}": step["gpu_ms"],
        f"gpu_busy_fraction{suffix}": step["busy_fraction"], f"decode_step_kernels{suffix}": step["kernels"],
    }
    if step["replay_ms"] is not None:
        figures["decode_graph_replay_ms"] = step["replay_ms"]
    return figures


def graph_replay_ms(graphs) -> float:
    """GPU milliseconds of the last step's graph alone: REPLAYS back-to-back replays
    between two CUDA events (the host queues them faster than the GPU runs them)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(REPLAYS):
        graphs.replay_last()
    end.record()
    torch.cuda.synchronize()
    return round(start.elapsed_time(end) / REPLAYS, 3)


def device_activity(events) -> tuple[float, int]:
    """(microseconds during which the GPU ran a kernel or a copy, number of kernels)."""
    from torch.autograd import DeviceType

    device = [e for e in events if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
    intervals = sorted((e.time_range.start, e.time_range.end) for e in device)
    busy, covered_until = 0.0, float("-inf")
    for start, end in intervals:
        if end > covered_until:
            busy += end - max(start, covered_until)
            covered_until = end
    kernels = sum(1 for e in device if not e.name.startswith(("Memcpy", "Memset")))
    return busy, kernels


def run(
    preset: str = GPU_PRESET, batch: int = GPU_BATCH, new_tokens: int = NEW_TOKENS, repeats: int = 3,
    decode_kernel: str = "auto",
) -> dict:
    import torch

    from rollout import make_engine

    if not torch.cuda.is_available():
        raise SystemExit("treadle bench engine --device cuda: torch sees no CUDA GPU")
    needed = 1 + WARM_STEPS + TIMED_STEPS + PROFILED_STEPS
    if new_tokens <= needed:
        raise SystemExit(f"--new-tokens must be > {needed} on cuda: the decode-step figures take that many steps")
    model, tokenizer = build_model(preset)
    vocab_size = model.config.vocab_size
    # The paged engines copy the weights; hf converts `model` itself, so it is built last.
    engines = {name: make_engine(config.backend, model, tokenizer, config)
               for name, config in engine_configs(batch, new_tokens, decode_kernel).items()}
    runner = engines["paged"].core.runner
    figures = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "preset": preset, "dtype": "bfloat16",
        "batch": batch, "prompt_len": PROMPT_LEN, "new_tokens": new_tokens,
        "paged_decode_kernel": runner.decode_kernel,
        "paged_cuda_graphs": runner.cuda_graphs.num_graphs,
        "paged_capture_seconds": round(runner.cuda_graphs.capture_seconds, 2),
    }
    figures.update(throughput(engines, vocab_size, batch, new_tokens, repeats))
    for name, suffix in (("paged", ""), ("paged_eager", "_eager")):
        figures.update(step_figures(decode_step(engines[name].core, batch, new_tokens, vocab_size), suffix))
    for engine in engines.values():
        engine.close()
    del engines, runner, model
    torch.cuda.empty_cache()
    try:
        from benchmarks.decode_kernel import measure_decode_kernels
    except ImportError as e:  # the kernel benchmark is its own module; report its absence, keep the rest
        figures["decode_kernel_error"] = f"benchmarks.decode_kernel: {e}"
    else:
        figures.update(measure_decode_kernels(device="cuda"))
    return figures


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(f: dict) -> str:
    return "\n".join([
        f"engine on {f['device']}: {f['preset']} ({f['dtype']}), batch {f['batch']}, prompt {f['prompt_len']}, "
        f"{f['new_tokens']} new tokens; paged decode: {f['paged_decode_kernel']} kernel, "
        f"{f['paged_cuda_graphs']} CUDA graphs captured in {f['paged_capture_seconds']:.1f} s (not timed)",
        f"  {'engine':12s} {'tokens/s':>10s} {'seconds':>9s} {'step ms':>8s} {'GPU ms':>7s} {'busy':>5s} {'kernels':>8s}",
        f"  {'paged':12s} {f['paged_tokens_per_s']:10.0f} {f['paged_seconds']:9.3f} {f['decode_step_ms']:8.2f} "
        f"{f['decode_step_gpu_ms']:7.2f} {_fraction(f['gpu_busy_fraction']):>5s} {f['decode_step_kernels']:8d}",
        f"  {'paged eager':12s} {f['paged_tokens_per_s_eager']:10.0f} {f['paged_seconds_eager']:9.3f} "
        f"{f['decode_step_ms_eager']:8.2f} {f['decode_step_gpu_ms_eager']:7.2f} "
        f"{_fraction(f['gpu_busy_fraction_eager']):>5s} "
        f"{f['decode_step_kernels_eager']:8d}",
        f"  {'hf':12s} {f['hf_tokens_per_s']:10.0f} {f['hf_seconds']:9.3f}",
        f"  speedup paged / hf: {f['speedup_vs_hf']:.2f}x (goal >= 5; eager {f['speedup_vs_hf_eager']:.2f}x); "
        f"decode-step GPU busy fraction {_fraction(f['gpu_busy_fraction'])} (goal >= 0.7); "
        f"the graph alone: {f.get('decode_graph_replay_ms', 'n/a')} ms of GPU time",
    ])


def report(args: argparse.Namespace) -> int:
    figures = run(
        preset=args.preset or GPU_PRESET, batch=args.batch or GPU_BATCH, new_tokens=args.new_tokens or NEW_TOKENS,
        repeats=args.repeats, decode_kernel=args.decode_kernel,
    )
    if not args.json:
        print(table(figures))
    print(json.dumps(figures))
    return 0
