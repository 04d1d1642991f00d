"""Speed and peak memory of the logprob + entropy head on a GPU: Triton, chunked torch, full logits.

    python3 -m benchmarks.logprob_speed [--tokens 16384] [--vocab 151936] [--hidden 1536] [--json]

One forward and backward of sum(logprob) + 0.01 sum(entropy) with respect to hidden
[N, H] and the head W [V, H] (random: hidden ~ N(0, 1), W ~ N(0, 1/H), so logits ~ N(0, 1);
targets uniform over the vocabulary; `--dtype` bfloat16 by default), by four paths:

- `logprob`: `logprob_and_entropy(backend="triton")` (learner/kernels/fused_logprob_triton.py);
- `chunked_logprob`: `logprob_and_entropy(backend="torch")`, `--chunk-size` tokens a chunk;
- `naive_logprob`: `naive_logprob_and_entropy`, full [N, V] fp32 logits, log_softmax and
  entropy under plain autograd: the reference the issue's goal is measured against;
- `naive_bf16_logprob`: full logits from a matmul in the inputs' dtype (tensor cores),
  then the same fp32 log_softmax and entropy: what a plain 16-bit model head does.

Each path runs once untimed (Triton compiles its kernels, cuBLAS warms up), then
`--repeats` times, synchronised; the fastest run is reported in ms. Peak memory is
torch.cuda.max_memory_allocated over the timed runs after reset_peak_memory_stats, in
GB (1e9 bytes), inputs included (hidden, W, targets: 0.52 GB at the defaults in bf16).
A path that runs out of memory reports null and is listed in `logprob_out_of_memory`.
logprob_speed_ratio = naive_logprob_ms / logprob_ms; the goal is >= 1.0 at vocabulary
151,936 on one H200. Defaults: Qwen2.5-1.5B's hidden size and vocabulary (apr-228m has
hidden 1024: `--hidden 1024`) at 16,384 tokens.

Needs CUDA (exits 2 without it) and no ray; `treadle bench learner --device cuda`
imports `measure_logprob` and merges its figures into its own (every key names the
logprob head). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

# torch is imported inside the functions, as in the other benches.

PATHS = ("logprob", "chunked_logprob", "naive_logprob", "naive_bf16_logprob")
DTYPES = ("bfloat16", "float16", "float32")


def _step(path: str, hidden, weight, targets, chunk_size: int) -> None:
    import torch

    from learner.fused_logprob import logprob_and_entropy, naive_logprob_and_entropy
    from learner.packing import IGNORE

    if path == "logprob":
        logprob, entropy = logprob_and_entropy(hidden, weight, targets, chunk_size=chunk_size, backend="triton")
    elif path == "chunked_logprob":
        logprob, entropy = logprob_and_entropy(hidden, weight, targets, chunk_size=chunk_size, backend="torch")
    elif path == "naive_logprob":
        logprob, entropy = naive_logprob_and_entropy(hidden, weight, targets)
    else:
        logp = torch.log_softmax((hidden @ weight.T).float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        gathered = logp.gather(-1, targets.clamp(min=0)[:, None]).squeeze(-1)
        logprob = torch.where(targets != IGNORE, gathered, 0.0)
    torch.autograd.grad(logprob.sum() + 0.01 * entropy.sum(), (hidden, weight))


def _time_path(path: str, hidden, weight, targets, chunk_size: int, repeats: int) -> tuple[float, float]:
    """(best ms, peak GB) of `repeats` forward+backward runs after one untimed run."""
    import torch

    _step(path, hidden, weight, targets, chunk_size)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _step(path, hidden, weight, targets, chunk_size)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3, torch.cuda.max_memory_allocated() / 1e9


def measure_logprob(
    tokens: int = 16384,
    vocab: int = 151936,
    hidden: int = 1536,
    dtype: str = "bfloat16",
    device: str = "cuda",
    repeats: int = 5,
    chunk_size: int = 1024,
) -> dict:
    """ms and peak GB of each path (PATHS), and logprob_speed_ratio = naive / Triton."""
    import torch

    if not (device.startswith("cuda") and torch.cuda.is_available()):
        raise RuntimeError(f"measure_logprob needs a CUDA device (got device={device!r}, cuda available: "
                           f"{torch.cuda.is_available()}); the Triton kernels do not run on a CPU")  # fmt: skip
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if min(tokens, vocab, hidden, repeats, chunk_size) < 1:
        raise ValueError("tokens, vocab, hidden, repeats and chunk_size must be >= 1")
    g = torch.Generator(device=device).manual_seed(0)
    dtype_ = getattr(torch, dtype)
    h = torch.randn(tokens, hidden, generator=g, device=device).to(dtype_).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=g, device=device) / hidden**0.5).to(dtype_).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=g, device=device)
    figures: dict = {
        "logprob_tokens": tokens, "logprob_vocab": vocab, "logprob_hidden": hidden, "logprob_dtype": dtype,
        "logprob_chunk_size": chunk_size, "logprob_repeats": repeats,
        "logprob_gpu": torch.cuda.get_device_name(device), "logprob_out_of_memory": [],
    }  # fmt: skip
    for path in PATHS:
        torch.cuda.empty_cache()
        try:
            figures[f"{path}_ms"], figures[f"{path}_peak_gb"] = _time_path(path, h, w, targets, chunk_size, repeats)
        except torch.cuda.OutOfMemoryError:
            figures[f"{path}_ms"] = figures[f"{path}_peak_gb"] = None
            figures["logprob_out_of_memory"].append(path)
    fast, naive = figures["logprob_ms"], figures["naive_logprob_ms"]
    figures["logprob_speed_ratio"] = naive / fast if fast and naive else None
    return figures


def table(figures: dict) -> str:
    f = {key.removeprefix("logprob_"): value for key, value in figures.items()}
    lines = [f"{f['tokens']} tokens, vocab {f['vocab']}, hidden {f['hidden']}, {f['dtype']} on {f['gpu']} "
             f"(best of {f['repeats']})"]  # fmt: skip
    for path in PATHS:
        ms, gb = figures[f"{path}_ms"], figures[f"{path}_peak_gb"]
        lines.append(f"  {path:20s} " + ("out of memory" if ms is None else f"{ms:9.1f} ms  {gb:6.2f} GB peak"))
    ratio = figures["logprob_speed_ratio"]
    lines.append("  logprob_speed_ratio (naive / triton): " + ("n/a" if ratio is None else f"{ratio:.2f}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.logprob_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--tokens", type=int, default=16384, help="tokens N (default 16384)")
    parser.add_argument("--vocab", type=int, default=151936, help="vocabulary V (default 151936)")
    parser.add_argument("--hidden", type=int, default=1536, help="hidden size H (default 1536)")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="dtype of hidden and W (default bfloat16)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="chunk_size of both fused paths (default 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path; the best is reported (default 5)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks.logprob_speed needs a CUDA GPU: torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    figures = measure_logprob(args.tokens, args.vocab, args.hidden, args.dtype, "cuda", args.repeats, args.chunk_size)
    if not args.json:
        print(table(figures))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
