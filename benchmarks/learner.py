"""`treadle bench learner`: the chunked logprob head's memory, and packed against padded steps.

    treadle bench learner [--json]        (or: python -m benchmarks.learner [--json])

This page is the CPU bench (the default, `--device cpu`); `--device cuda` runs
benchmarks/learner_cuda.py instead (packed SFT steps with FlexAttention against causal
rows, peak memory, the logprob head's speed), with its own default sizes.

Memory: forward and backward of the logprob/entropy head alone (learner/fused_logprob.py)
at `--tokens` 4096, `--vocab` 32000, `--hidden` 256 in fp32, for the chunked path
(`--chunk-size` 1024) and the naive one (full [N, V] logits, plain autograd). Each path
runs in a fresh Python process, so no allocator cache or earlier peak is shared. On a
CUDA machine the figure is torch.cuda.max_memory_allocated above what was allocated
before the step. On CPU, torch allocates from the C heap, which tracemalloc does not see,
so the process's resident memory is read instead: after the inputs exist and a tiny
warm-up of the same path has run, VmRSS is noted and the peak (VmHWM) is reset through
/proc/self/clear_refs; the figure is VmHWM after the step minus that VmRSS. The process
runs with glibc's mmap threshold fixed at 64 KiB (ALLOCATOR_ENV), so a freed tensor
leaves resident memory at once; with the default dynamic threshold, chunk-sized buffers
under 32 MiB were kept as heap after being freed and the chunked figure grew with N.
Both paths count their gradients (grad_hidden, grad_W); where clear_refs is missing
(not Linux), the rise of ru_maxrss is used and named in the JSON (`memory_method`).
Goal: memory_ratio = chunked / naive <= 0.25.

Packing: forward and backward (label logprob loss, as the RL learner computes it) of the
`tiny` preset on an APR-like mix: episodes of one parent thread of 150-400 tokens and
2-6 child threads of 20-80, `--sequences` threads in all, random token ids. Packed:
learner/packing.py's `pack` into micro-batches of `--rows` rows of `--seq-len` with the
dense block-diagonal mask (the CPU layout, learner/packed_attention.py). Padded: the same
threads in the same micro-batches, each micro-batch right-padded to its longest thread
with a padding mask. So both run the same sequences and number of forward passes and
differ only in layout (the bench checks that their summed logprobs agree). tokens/s
counts real tokens; best of `--repeats` interleaved runs. Goal: packing_speedup >= 1.5.

Threads: `--threads` (default 1, as a learner actor has num_cpus=1). The last line
printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

# torch is imported inside the functions: `treadle bench --help` builds this module's
# arguments and must not pay for it.

REPO = Path(__file__).resolve().parents[1]
PARENT_LENGTHS, CHILD_LENGTHS, CHILDREN_PER_PARENT = (150, 400), (20, 80), (2, 6)
WARMUP_TOKENS = 8
DEFAULT_SIZES = {"cpu": (4, 512), "cuda": (16, 4096)}  # (--rows, --seq-len)
# glibc: every allocation above 64 KiB is its own mapping, unmapped when freed (no dynamic
# threshold), so resident memory follows live tensors instead of freed heap the allocator keeps.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def head_step_peak(path: str, tokens: int, vocab: int, hidden: int, chunk_size: int) -> dict:
    """Peak extra memory and seconds of one forward+backward of the head, in this process."""
    import resource

    import torch

    from learner.fused_logprob import logprob_and_entropy, naive_logprob_and_entropy

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def inputs(num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(num_tokens)
        h = torch.randn(num_tokens, hidden, generator=g).to(device).requires_grad_()
        return h, torch.randint(0, vocab, (num_tokens,), generator=g).to(device)

    def step(h: torch.Tensor, targets: torch.Tensor) -> None:
        if path == "chunked":
            logprob, entropy = logprob_and_entropy(h, weight, targets, chunk_size=chunk_size)
        else:
            logprob, entropy = naive_logprob_and_entropy(h, weight, targets)
        (logprob.sum() + 0.01 * entropy.sum()).backward()

    weight = torch.randn(vocab, hidden, generator=torch.Generator().manual_seed(0)) / hidden**0.5
    weight = weight.to(device).requires_grad_()
    step(*inputs(WARMUP_TOKENS))
    weight.grad = None
    h, targets = inputs(tokens)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before, method = torch.cuda.memory_allocated(), "cuda max_memory_allocated"
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
            before, method = _resident_kib("VmRSS") * 1024, "VmHWM after clear_refs, fresh process"
        except OSError:
            before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss rise, fresh process"
    start = time.perf_counter()
    step(h, targets)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    elif method.startswith("VmHWM"):
        peak = _resident_kib("VmHWM") * 1024
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_bytes": peak - before, "seconds": time.perf_counter() - start, "method": method}


def head_step_peak_in_subprocess(path: str, tokens: int, vocab: int, hidden: int, chunk_size: int, threads: int) -> dict:
    code = (
        f"import json, torch; torch.set_num_threads({threads}); from benchmarks.learner import head_step_peak; "
        f"print(json.dumps(head_step_peak({path!r}, {tokens}, {vocab}, {hidden}, {chunk_size})))"
    )
    env = {**os.environ, **ALLOCATOR_ENV}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the {path} memory run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def apr_like_threads(num_sequences: int, vocab_size: int, seed: int) -> list[list[int]]:
    """Episodes of one long parent then 2-6 short children, cut at `num_sequences` threads."""
    rng = random.Random(seed)
    threads: list[list[int]] = []
    while len(threads) < num_sequences:
        lengths = [rng.randint(*PARENT_LENGTHS)]
        lengths += [rng.randint(*CHILD_LENGTHS) for _ in range(rng.randint(*CHILDREN_PER_PARENT))]
        threads += [[rng.randrange(4, vocab_size) for _ in range(n)] for n in lengths]
    return threads[:num_sequences]


def micro_batches(threads: list[list[int]], seq_len: int, rows: int) -> tuple[list[dict], list[dict]]:
    """The same groups of threads as packed rows and as right-padded rows (model inputs)."""
    import numpy as np
    import torch

    from learner.attention_masks import dense_mask, segment_mask_mod
    from learner.packing import IGNORE, pack

    packed, padded, rest = [], [], [(ids, [True] * len(ids)) for ids in threads]
    while rest:
        batch = pack(rest, seq_len, rows)
        assert batch.num_sequences > 0, "a thread is longer than --seq-len"
        group, rest = rest[: batch.num_sequences], rest[batch.num_sequences :]
        packed.append({
            "input_ids": torch.from_numpy(batch.input_ids),
            "position_ids": torch.from_numpy(batch.position_ids),
            "attention_mask": dense_mask(segment_mask_mod(torch.from_numpy(batch.segment_ids)), rows, seq_len),
            "labels": torch.from_numpy(batch.labels),
        })
        longest = max(len(ids) for ids, _ in group)
        input_ids = np.zeros((len(group), longest), dtype=np.int64)
        labels = np.full((len(group), longest), IGNORE, dtype=np.int64)
        mask = np.zeros((len(group), longest), dtype=np.int64)
        for row, (ids, _) in enumerate(group):
            input_ids[row, : len(ids)], labels[row, : len(ids) - 1], mask[row, : len(ids)] = ids, ids[1:], 1
        padded.append({k: torch.from_numpy(v) for k, v in (("input_ids", input_ids), ("attention_mask", mask), ("labels", labels))})
    return packed, padded


def train_pass(model, batches: list[dict]) -> tuple[float, float]:
    """(seconds, summed label logprob) of forward+backward over every micro-batch."""
    import torch

    from learner.packing import IGNORE

    model.zero_grad(set_to_none=True)
    start, total = time.perf_counter(), 0.0
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        labels = batch["labels"]
        gathered = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        logprob = torch.where(labels != IGNORE, gathered, torch.zeros_like(gathered)).sum()
        (-logprob).backward()
        total += logprob.item()
    return time.perf_counter() - start, total


def packing_throughput(num_sequences: int, seq_len: int, rows: int, repeats: int) -> dict:
    from learner.models import init_model
    from learner.presets import ModelConfig
    from reasoning.countdown.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    model = init_model(ModelConfig(preset="tiny", init_seed=0), tokenizer).float().train()
    threads = apr_like_threads(num_sequences, len(tokenizer), seed=0)
    packed, padded = micro_batches(threads, seq_len, rows)
    _, packed_sum = train_pass(model, packed)  # warm-up, and both layouts must agree
    _, padded_sum = train_pass(model, padded)
    assert abs(packed_sum - padded_sum) <= 1e-4 * abs(padded_sum), (packed_sum, padded_sum)
    best = {"packed": float("inf"), "padded": float("inf")}
    for _ in range(repeats):
        for name, batches in (("packed", packed), ("padded", padded)):
            best[name] = min(best[name], train_pass(model, batches)[0])
    num_tokens = sum(len(t) for t in threads)
    packed_tps, padded_tps = num_tokens / best["packed"], num_tokens / best["padded"]
    return {
        "num_sequences": len(threads),
        "num_tokens": num_tokens,
        "micro_batches": len(packed),
        "packed_slots": sum(b["input_ids"].numel() for b in packed),
        "padded_slots": sum(b["input_ids"].numel() for b in padded),
        "packed_seconds": round(best["packed"], 3),
        "padded_seconds": round(best["padded"], 3),
        "packed_tokens_per_s": round(packed_tps, 1),
        "padded_tokens_per_s": round(padded_tps, 1),
        "packing_speedup": round(packed_tps / padded_tps, 2),
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    shape = (args.tokens, args.vocab, args.hidden, args.chunk_size)
    chunked = head_step_peak_in_subprocess("chunked", *shape, threads=args.threads)
    naive = head_step_peak_in_subprocess("naive", *shape, threads=args.threads)
    figures = {
        "threads": args.threads,
        "tokens": args.tokens, "vocab": args.vocab, "hidden": args.hidden, "chunk_size": args.chunk_size,
        "chunked_peak_bytes": chunked["peak_bytes"],
        "naive_peak_bytes": naive["peak_bytes"],
        "memory_ratio": round(chunked["peak_bytes"] / max(naive["peak_bytes"], 1), 3),
        "memory_method": chunked["method"],
        "chunked_head_seconds": round(chunked["seconds"], 3),
        "naive_head_seconds": round(naive["seconds"], 3),
        "seq_len": args.seq_len, "rows": args.rows,
    }
    figures.update(packing_throughput(args.sequences, args.seq_len, args.rows, args.repeats))
    return figures


def table(f: dict) -> str:
    mib = 2**20
    return "\n".join([
        (
            f"logprob/entropy head, forward+backward: {f['tokens']} tokens, vocab {f['vocab']}, hidden {f['hidden']}, "
            f"fp32, {f['threads']} threads ({f['memory_method']})"
        ),
        f"  {'path':8s} {'peak MiB':>10s} {'seconds':>9s}",
        f"  {'chunked':8s} {f['chunked_peak_bytes'] / mib:10.1f} {f['chunked_head_seconds']:9.3f}   chunks of {f['chunk_size']}",
        f"  {'naive':8s} {f['naive_peak_bytes'] / mib:10.1f} {f['naive_head_seconds']:9.3f}",
        f"  memory chunked / naive: {f['memory_ratio']:.3f} (goal <= 0.25)",
        (
            f"tiny preset forward+backward, APR-like mix: {f['num_sequences']} threads, {f['num_tokens']} tokens, "
            f"{f['micro_batches']} micro-batches of {f['rows']} x {f['seq_len']} packed (best of repeats)"
        ),
        f"  {'layout':8s} {'tokens/s':>10s} {'seconds':>9s} {'slots':>8s}",
        f"  {'packed':8s} {f['packed_tokens_per_s']:10.0f} {f['packed_seconds']:9.3f} {f['packed_slots']:8d}",
        f"  {'padded':8s} {f['padded_tokens_per_s']:10.0f} {f['padded_seconds']:9.3f} {f['padded_slots']:8d}",
        f"  speedup packed / padded: {f['packing_speedup']:.2f}x (goal >= 1.5)",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens of the memory comparison (default 4096)")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary of the memory comparison (default 32000)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the memory comparison (default 256)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="tokens per chunk of the chunked path (default 1024)")
    parser.add_argument("--sequences", type=int, default=64, help="threads of the packing comparison (default 64)")
    parser.add_argument("--seq-len", type=int, default=None, help="packed row length (default 512; cuda 4096)")
    parser.add_argument("--rows", type=int, default=None, help="packed rows per micro-batch (default 4; cuda 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per layout (best is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: benchmarks/learner_cuda.py")
    parser.add_argument("--preset", default="apr-228m", help="cuda: model preset (default apr-228m)")
    parser.add_argument("--steps", type=int, default=5, help="cuda: timed SFT steps per layout (default 5)")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true",
        help="cuda: recompute each decoder layer in the backward (treadle sft does not; default off)",
    )  # fmt: skip


def resolve_sizes(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the device's default --rows and --seq-len where not given."""
    rows, seq_len = DEFAULT_SIZES[args.device]
    args.rows = rows if args.rows is None else args.rows
    args.seq_len = seq_len if args.seq_len is None else args.seq_len
    return args


def report(args: argparse.Namespace) -> int:
    args = resolve_sizes(args)
    if args.device == "cuda":
        from benchmarks import learner_cuda

        figures, text = learner_cuda.run(args), learner_cuda.table
    else:
        figures, text = run(args), table
    if not args.json:
        print(text(figures))
    print(json.dumps(figures))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="treadle bench learner", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return report(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
