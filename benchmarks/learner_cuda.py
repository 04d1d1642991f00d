"""`treadle bench learner --device cuda`: packed SFT steps with mask-free attention, on one GPU.

    treadle bench learner --device cuda [--preset apr-228m --rows 16 --seq-len 4096 --steps 5]
    (or, where treadle is not installed: PYTHONPATH=. python3 -m benchmarks.learner --device cuda)

A training step is SFT's (learner/sft.py `packed_loss`, forward + backward of the
token-mean cross-entropy over trained tokens) as configs/countdown-4-sft-apr.yaml runs
it: fp32 weights under bf16 autocast, no gradient checkpointing (`treadle sft` has none;
`--gradient-checkpointing` measures it), the preset's model with random weights and the
Countdown tokenizer's vocabulary. Tokens are random ids in sequences of
`SEQUENCE_LENGTHS` tokens that fill every row exactly, so three layouts of the same
`--rows` x `--seq-len` tokens compare:
  - packed: the learner's CUDA layout (learner/packed_attention.py: a FlexAttention
    block mask built from segment ids, per step, inside the timing) -> packed_tokens_per_s
    and peak_gb (torch.cuda.max_memory_allocated over its timed steps, 1e9 bytes);
  - causal: the same tokens as one sequence per row, no mask (SDPA's causal flash
    kernel): the speed packing is measured against -> causal_tokens_per_s, and
    packed_over_causal (goal >= 0.9, with peak_gb < 40 at 16 x 4,096);
  - dense mask: the old path, a [rows, 1, L, L] bool mask to SDPA ->
    dense_mask_tokens_per_s. A layout that runs out of GPU memory reports null.
Each layout runs `WARMUP_STEPS` steps (FlexAttention compiles on the first) and then
`--steps` timed ones. Then benchmarks/logprob_speed.py's `measure_logprob` at 16,384
tokens and vocabulary 151,936 adds logprob_ms and naive_logprob_ms (and its other
figures) to the JSON line.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

SEQUENCE_LENGTHS = (64, 2048)  # uniform, tokens: SFT traces of a few hundred to a few thousand
WARMUP_STEPS = 2
LOGPROB_TOKENS, LOGPROB_VOCAB = 16384, 151936


def full_rows(rows: int, seq_len: int, vocab_size: int, seed: int = 0):
    """(packed, causal): random sequences filling `rows` rows of `seq_len` exactly, packed,
    and the same tokens as one sequence per row (PackedBatch, one_per_row)."""
    from learner.packing import pack

    rng = np.random.default_rng(seed)
    sequences, row_tokens = [], []
    for _ in range(rows):
        row: list[int] = []
        while len(row) < seq_len:
            n = min(seq_len - len(row), int(rng.integers(SEQUENCE_LENGTHS[0], SEQUENCE_LENGTHS[1] + 1)))
            sequences.append(rng.integers(4, vocab_size, n).tolist())
            row += sequences[-1]
        row_tokens.append(row)
    # First fit keeps each row's sequences in its row: every earlier row is exactly full.
    packed = pack([(ids, [True] * len(ids)) for ids in sequences], seq_len, rows)
    causal = pack([(ids, [True] * seq_len) for ids in row_tokens], seq_len, rows, one_per_row=True)
    assert packed.num_sequences == len(sequences) and packed.num_tokens == causal.num_tokens == rows * seq_len
    assert (packed.input_ids == causal.input_ids).all()
    return packed, causal


def timed_steps(model, batch, steps: int) -> tuple[float, float] | None:
    """(seconds per SFT step, peak GB allocated) over `steps` steps after the warm-up;
    None when the step runs out of GPU memory."""
    import torch

    from learner.sft import packed_loss

    device = torch.device("cuda")

    def step() -> None:
        model.zero_grad(set_to_none=True)
        packed_loss(model, batch, device).backward()

    try:
        for _ in range(WARMUP_STEPS):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
    return (time.perf_counter() - start) / steps, torch.cuda.max_memory_allocated() / 1e9


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from learner.models import enable_activation_checkpointing, init_model
    from learner.packed_attention import DENSE, FLEX, use_layout
    from learner.presets import ModelConfig, PRESETS
    from reasoning.countdown.tokenizer import build_tokenizer

    if not torch.cuda.is_available():
        raise SystemExit("treadle bench learner --device cuda: no CUDA device")
    if args.preset not in PRESETS:
        raise SystemExit(f"--preset {args.preset!r}: choose one of {', '.join(PRESETS)}")
    tokenizer = build_tokenizer()
    model = init_model(ModelConfig(preset=args.preset, init_seed=0), tokenizer).float().cuda().train()
    if args.gradient_checkpointing:
        enable_activation_checkpointing(model)
    packed, causal = full_rows(args.rows, args.seq_len, len(tokenizer))
    use_layout(model, FLEX)
    runs = {"packed": timed_steps(model, packed, args.steps), "causal": timed_steps(model, causal, args.steps)}
    use_layout(model, DENSE)
    runs["dense_mask"] = timed_steps(model, packed, args.steps)
    del model
    torch.cuda.empty_cache()
    tokens = args.rows * args.seq_len
    speed = {k: None if r is None else round(tokens / r[0], 1) for k, r in runs.items()}
    peak = {k: None if r is None else round(r[1], 2) for k, r in runs.items()}
    figures = {
        "device": "cuda", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1),
        "preset": args.preset, "vocab_size": len(tokenizer), "rows": args.rows, "seq_len": args.seq_len,
        "steps": args.steps, "sequences": packed.num_sequences, "layout": FLEX,
        "precision": "bf16 autocast, fp32 weights", "gradient_checkpointing": args.gradient_checkpointing,
        "packed_tokens_per_s": speed["packed"],
        "causal_tokens_per_s": speed["causal"],
        "packed_over_causal": None if None in (speed["packed"], speed["causal"]) else round(
            speed["packed"] / speed["causal"], 3),
        "peak_gb": peak["packed"],
        "causal_peak_gb": peak["causal"],
        "dense_mask_tokens_per_s": speed["dense_mask"],
        "dense_mask_peak_gb": peak["dense_mask"],
    }  # fmt: skip
    from benchmarks.logprob_speed import measure_logprob

    figures.update(measure_logprob(tokens=LOGPROB_TOKENS, vocab=LOGPROB_VOCAB))
    return figures


def table(f: dict[str, Any]) -> str:
    def row(name: str, key: str, peak: str) -> str:
        if f[key] is None:
            return f"  {name:12s} {'out of memory':>13s}"
        return f"  {name:12s} {f[key]:13.0f}   peak {f[peak]:.1f} GB"

    ratio = "n/a" if f["packed_over_causal"] is None else f"{f['packed_over_causal']:.3f}"
    return "\n".join([
        (
            f"{f['preset']} SFT step (forward + backward), {f['rows']} x {f['seq_len']} tokens, {f['precision']}, "
            f"gradient checkpointing {'on' if f['gradient_checkpointing'] else 'off'}, "
            f"{f['sequences']} packed sequences, {f['gpu']}"
        ),
        f"  {'layout':12s} {'tokens/s':>13s}",
        row("packed flex", "packed_tokens_per_s", "peak_gb") + " (goal < 40)",
        row("causal", "causal_tokens_per_s", "causal_peak_gb"),
        row("dense mask", "dense_mask_tokens_per_s", "dense_mask_peak_gb"),
        f"  packed / causal: {ratio} (goal >= 0.9)",
        f"logprob head at {LOGPROB_TOKENS} tokens, vocab {LOGPROB_VOCAB}: "
        f"{f.get('logprob_ms')} ms, naive {f.get('naive_logprob_ms')} ms",
    ])
