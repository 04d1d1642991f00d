"""`treadle bench engine`: the paged engine against transformers generate, and prefix sharing.

    treadle bench engine [--json]        (or: python -m benchmarks.engine [--json])
    treadle bench engine --device cuda [--preset apr-228m] [--json]   (benchmarks/engine_gpu.py)

Throughput: the `tiny` preset (`--preset`) with fixed-seed random weights, 64 prompts
(`--batch`) of 32 random token ids (new ones each repeat, the same for both backends),
temperature-1 sampling of exactly 128 new tokens each (`--new-tokens`; ignore_eos),
submitted at once through the Engine protocol (`make_engine("paged" | "hf", ...)`, the
async API callers use). A second, `mixed` workload draws each request's output length
from 16 .. 256, as RL episodes end at different points: transformers keeps a batch
running until its longest row is done, continuous batching retires rows as they finish. Each backend runs `--repeats` times,
interleaved with the other so that load from other processes hits both alike; the best
run of each is reported (on a shared machine the fastest run is the one least
disturbed). Threads: torch uses `--threads` (default: every core) in both.

The paged engine runs as EngineConfig's defaults have it (`--decode-kernel` picks
another attention kernel): on a CPU, the C kernels of rollout/kernels/cpu (compiled on
first use, before anything is timed; a second or so, once per machine). `--compile`
compiles its decode step with torch.compile (EngineConfig.compile_decode); that
compilation happens while the engine is built, also before anything is timed, as the
construction of the hf engine is not timed either, and is reported on its own as
`paged_compile_seconds`. `paged_decode_kernel` names the
attention kernel the engine chose.

vLLM: when the `vllm` package is installed (e.g. in .venv-vllm, see
scripts/setup_vllm_venv.sh), the `vllm` backend runs the same workloads in the same
interleaved repeats (`vllm_tokens_per_s`, `speedup_vs_vllm` = paged / vllm, ...). vLLM
computes in a worker process of its own whose OpenMP threads it binds to every core but
one, kept for its front end (on 2 cores: one thread; VLLM_CPU_NUM_OF_RESERVED_CPU=0
gives it all); `--threads` does not reach it. Its logs go to stderr. It starts in 1-3
minutes on a 2-core CPU. Without vllm nothing about it is run or printed.

Fork: a parent request computes a 256-token prefix (max_tokens=1), then 8 children whose
prompt is that prefix each sample 64 tokens (different seeds), with the prefix cache on
and off. The core is stepped directly so the KV blocks in use can be read after every
step; `fork_kv_blocks` is the peak over the children's run and `fork_prefill_tokens`
the prefill the children computed. The goal for the block ratio is
(P + k*S) / (k * (P + S)): the prefix stored once plus each child's own tokens.

The last line printed is one JSON object with every figure. `--device cuda` runs
benchmarks/engine_gpu.py instead: the same throughput figures on a GPU (apr-228m, bf16,
batch 256), with and without CUDA graphs, and the decode step's GPU busy fraction.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

# torch is imported inside the functions: `treadle bench --help` builds this module's
# arguments and must not pay for it.

BATCH, PROMPT_LEN, NEW_TOKENS = 64, 32, 128
FORK_PREFIX, FORK_CHILDREN, FORK_NEW_TOKENS = 256, 8, 64


def build_model(preset: str = "tiny"):
    """A preset with fixed-seed random weights (float32, on the CPU) and the Countdown tokenizer."""
    from learner.models import init_model
    from learner.presets import ModelConfig
    from reasoning.countdown.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    return init_model(ModelConfig(preset=preset, init_seed=0), tokenizer).eval(), tokenizer


def random_prompts(num: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab_size, (num, length), generator=generator).tolist()


async def timed_batch(engine, requests) -> tuple[float, int]:
    """Submit (prompt, sampling) pairs at once; (seconds until the last finished, tokens)."""
    start = time.perf_counter()
    completions = await asyncio.gather(*(engine.generate(p, s) for p, s in requests))
    seconds = time.perf_counter() - start
    for c, (_, s) in zip(completions, requests):
        assert c.error is None and len(c.token_ids) == s.max_tokens, (c.finish_reason, c.error)
    return seconds, sum(len(c.token_ids) for c in completions)


def workload(name: str, vocab_size: int, seed: int, batch: int, new_tokens: int) -> list:
    """`fixed`: every request samples `new_tokens` tokens. `mixed`: output lengths drawn
    uniformly from new_tokens / 8 .. 2 * new_tokens (16 .. 256 for 128), as when RL
    episodes stop at different points."""
    import random

    from rollout import SamplingParams

    prompts = random_prompts(batch, PROMPT_LEN, vocab_size, seed=seed)
    if name == "mixed":
        lengths = random.Random(seed).choices(range(max(1, new_tokens // 8), 2 * new_tokens + 1), k=batch)
    else:
        lengths = [new_tokens] * batch
    return [(p, SamplingParams(max_tokens=n, temperature=1.0, ignore_eos=True)) for p, n in zip(prompts, lengths)]


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def throughput(
    model, tokenizer, repeats: int, compile_decode: bool, batch: int, new_tokens: int, decode_kernel: str
) -> dict:
    from rollout import EngineConfig, make_engine

    backends = ("paged", "hf", "vllm") if vllm_installed() else ("paged", "hf")
    if "vllm" in backends:  # vLLM logs to stdout by default; keep stdout for the figures
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    configs = {name: EngineConfig(backend=name, max_num_seqs=batch) for name in backends}
    configs["paged"].compile_decode = compile_decode
    configs["paged"].decode_kernel = decode_kernel
    engines = {name: make_engine(name, model, tokenizer, config) for name, config in configs.items()}
    runner = engines["paged"].core.runner
    graph = runner.decode_graph
    best = {(name, kind): float("inf") for name in engines for kind in ("fixed", "mixed")}
    tokens = {}

    async def measure():
        warm = workload("fixed", model.config.vocab_size, seed=0, batch=4, new_tokens=new_tokens)
        for engine in engines.values():
            await timed_batch(engine, warm)
        for repeat in range(repeats):
            for kind in ("fixed", "mixed"):
                # Fresh prompts each repeat, so no run is helped by the prefix cache of the last.
                requests = workload(kind, model.config.vocab_size, seed=1 + repeat, batch=batch, new_tokens=new_tokens)
                for name, engine in engines.items():
                    seconds, tokens[name, kind] = await timed_batch(engine, requests)
                    best[name, kind] = min(best[name, kind], seconds)

    asyncio.run(measure())
    for engine in engines.values():
        engine.close()
    figures = {
        "paged_decode_kernel": runner.decode_kernel,
        "paged_compile_decode": graph is not None,
        "paged_compile_seconds": round(graph.compile_seconds, 1) if graph is not None else 0.0,
    }
    for kind, suffix in (("fixed", ""), ("mixed", "_mixed")):
        paged = tokens["paged", kind] / best["paged", kind]
        hf = tokens["hf", kind] / best["hf", kind]
        figures.update({
            f"paged{suffix}_tokens_per_s": round(paged, 1),
            f"hf{suffix}_tokens_per_s": round(hf, 1),
            f"speedup_vs_hf{suffix}": round(paged / hf, 2),
            f"paged{suffix}_seconds": round(best["paged", kind], 3),
            f"hf{suffix}_seconds": round(best["hf", kind], 3),
        })
        if "vllm" in engines:
            vllm = tokens["vllm", kind] / best["vllm", kind]
            figures.update({
                f"vllm{suffix}_tokens_per_s": round(vllm, 1),
                f"speedup_vs_vllm{suffix}": round(paged / vllm, 2),
                f"vllm{suffix}_seconds": round(best["vllm", kind], 3),
            })
    return figures


def fork(model, caching: bool) -> dict:
    from rollout import EngineConfig, SamplingParams
    from rollout.paged.core import PagedCore
    from rollout.requests import Request

    core = PagedCore.from_model(model, EngineConfig(num_kv_blocks=512, enable_prefix_caching=caching))
    prefix = random_prompts(1, FORK_PREFIX, model.config.vocab_size, seed=1000)[0]
    core.add_request(Request("parent", prefix, SamplingParams(max_tokens=1, temperature=0)))
    while core.has_unfinished():
        core.step()
    before = core.stats()
    for child in range(FORK_CHILDREN):
        sampling = SamplingParams(max_tokens=FORK_NEW_TOKENS, temperature=1.0, seed=child, ignore_eos=True)
        core.add_request(Request(f"child-{child}", prefix, sampling))
    peak_blocks, start = 0, time.perf_counter()
    while core.has_unfinished():
        core.step()
        peak_blocks = max(peak_blocks, core.stats().kv_blocks_in_use)
    seconds = time.perf_counter() - start
    after = core.stats()
    return {
        "prefill_tokens": after.prefill_tokens_computed - before.prefill_tokens_computed,
        "kv_blocks": peak_blocks,
        "seconds": round(seconds, 3),
    }


def run(
    repeats: int = 3, threads: int | None = None, compile_decode: bool = False, preset: str = "tiny",
    batch: int | None = None, new_tokens: int | None = None, decode_kernel: str = "auto",
) -> dict:
    """The CPU run; `batch` and `new_tokens` default to BATCH and NEW_TOKENS."""
    import torch

    batch, new_tokens = batch or BATCH, new_tokens or NEW_TOKENS
    torch.set_num_threads(threads or os.cpu_count() or 1)
    model, tokenizer = build_model(preset)
    figures = {"threads": torch.get_num_threads(), "batch": batch, "prompt_len": PROMPT_LEN, "new_tokens": new_tokens}
    figures.update(throughput(model, tokenizer, repeats, compile_decode, batch, new_tokens, decode_kernel))
    cached, uncached = fork(model, caching=True), fork(model, caching=False)
    p, s, k = FORK_PREFIX, FORK_NEW_TOKENS, FORK_CHILDREN
    figures.update({
        "fork_prefill_tokens": cached["prefill_tokens"],
        "fork_prefill_tokens_without_cache": uncached["prefill_tokens"],
        "fork_kv_blocks": cached["kv_blocks"],
        "fork_kv_blocks_without_cache": uncached["kv_blocks"],
        "fork_kv_blocks_ratio": round(cached["kv_blocks"] / uncached["kv_blocks"], 3),
        "fork_kv_blocks_ratio_goal": round((p + k * s) / (k * (p + s)), 3),
        "fork_seconds": cached["seconds"],
        "fork_seconds_without_cache": uncached["seconds"],
    })
    return figures


def table(f: dict, preset: str = "tiny") -> str:
    rows = [
        f"engine throughput: {preset} preset, batch {f['batch']}, prompt {f['prompt_len']}, "
        f"{f['new_tokens']} new tokens, {f['threads']} threads (best of repeats); paged decode: "
        f"{f['paged_decode_kernel']} kernel, "
        + (f"compiled ({f['paged_compile_seconds']:.1f} s, not timed)" if f["paged_compile_decode"] else "eager"),
        f"  {'backend':8s} {'tokens/s':>10s} {'seconds':>9s}   mixed lengths: {'tokens/s':>10s} {'seconds':>9s}",
        f"  {'paged':8s} {f['paged_tokens_per_s']:10.0f} {f['paged_seconds']:9.3f}   "
        f"{'':15s}{f['paged_mixed_tokens_per_s']:10.0f} {f['paged_mixed_seconds']:9.3f}",
        f"  {'hf':8s} {f['hf_tokens_per_s']:10.0f} {f['hf_seconds']:9.3f}   "
        f"{'':15s}{f['hf_mixed_tokens_per_s']:10.0f} {f['hf_mixed_seconds']:9.3f}",
        f"  speedup paged / hf: {f['speedup_vs_hf']:.2f}x (goal >= 3); mixed lengths: {f['speedup_vs_hf_mixed']:.2f}x",
    ]
    if "vllm_tokens_per_s" in f:
        rows[4:4] = [
            f"  {'vllm':8s} {f['vllm_tokens_per_s']:10.0f} {f['vllm_seconds']:9.3f}   "
            f"{'':15s}{f['vllm_mixed_tokens_per_s']:10.0f} {f['vllm_mixed_seconds']:9.3f}",
        ]
        rows.append(f"  paged / vllm: {f['speedup_vs_vllm']:.2f}x; mixed lengths: {f['speedup_vs_vllm_mixed']:.2f}x")
    rows += [
        f"fork: {FORK_CHILDREN} children x {FORK_NEW_TOKENS} tokens after a {FORK_PREFIX}-token prefix",
        f"  {'prefix cache':14s} {'prefill tokens':>15s} {'peak KV blocks':>15s} {'seconds':>8s}",
        f"  {'on':14s} {f['fork_prefill_tokens']:15d} {f['fork_kv_blocks']:15d} {f['fork_seconds']:8.3f}",
        f"  {'off':14s} {f['fork_prefill_tokens_without_cache']:15d} {f['fork_kv_blocks_without_cache']:15d} "
        f"{f['fork_seconds_without_cache']:8.3f}",
        f"  KV blocks on/off: {f['fork_kv_blocks_ratio']:.3f} (goal <= {f['fork_kv_blocks_ratio_goal']:.3f})",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="treadle bench engine", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return report(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend (best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--compile", action="store_true", help="compile the paged engine's decode step (torch.compile)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: benchmarks/engine_gpu.py")
    parser.add_argument("--preset", default=None, help="model preset (default: tiny on cpu, apr-228m on cuda)")
    parser.add_argument("--batch", type=int, default=None, help=f"requests at once (default: {BATCH} on cpu, 256 on cuda)")
    parser.add_argument("--new-tokens", type=int, default=None, help=f"tokens per request (default {NEW_TOKENS})")
    parser.add_argument(
        "--decode-kernel", choices=("auto", "cpu", "torch", "triton"), default="auto",
        help="the paged engine's attention kernel (EngineConfig.decode_kernel)",
    )


def report(args: argparse.Namespace) -> int:
    if args.device == "cuda":
        from benchmarks import engine_gpu

        return engine_gpu.report(args)
    preset = args.preset or "tiny"
    figures = run(
        repeats=args.repeats, threads=args.threads, compile_decode=args.compile, preset=preset,
        batch=args.batch, new_tokens=args.new_tokens, decode_kernel=args.decode_kernel,
    )
    if not args.json:
        print(table(figures, preset))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
