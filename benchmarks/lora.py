"""`treadle bench lora`: bytes per weight sync and learner step time, LoRA against full fine-tuning.

    treadle bench lora [--json] [--rank 8] [--steps 3] [--threads 1]

One process, the `small` preset (randomly initialised, the Countdown tokenizer) and one
batch of synthetic episodes (`--episodes` root threads of a 16-token prompt and
`--tokens` output tokens of random ids, in groups of 4 with rewards 1, 0, 1, 0 so every
token has an advantage), trained by the RL learner (learner/rl_step.py) twice from the
same weights: full fine-tuning, then LoRA of `--rank` (alpha = 2 x rank, the
`--target-modules`, default all seven linear layers of a decoder layer). For each:

- step_s: median wall time of `--steps` learner steps after one warm-up step (forward,
  backward, AdamW; one micro-batch of `--rows` rows);
- sync_bytes: bytes of `learner.weights()`, what one weight sync puts into Ray's object
  store (LoRA: the adapters, which each worker merges into its base);
- sync_s: median time of `learner.weights()` plus, for LoRA, the worker's merge
  (learner/lora_merge.py), plus a paged engine's `update_weights` of the result (the
  learner's and the worker's parts of a sync, without Ray between);
- trainable_params, and optimizer_state_bytes (AdamW's two moments, fp32).

Ratios are LoRA / full. The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

PRESET = "small"
GROUP_REWARDS = (1.0, 0.0, 1.0, 0.0)
PROMPT_TOKENS = 16


def episode_rows(num_episodes: int, num_tokens: int, vocab_size: int, seed: int = 0) -> list[dict]:
    """One root thread per episode, random ids; groups of len(GROUP_REWARDS) episodes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for e in range(num_episodes):
        group = f"p{e // len(GROUP_REWARDS)}#0"
        ids = rng.integers(10, vocab_size, PROMPT_TOKENS + num_tokens).tolist()
        rows.append({
            "episode_id": f"e{e}", "group_id": group, "task": "countdown", "problem_id": group.split("#")[0],
            "problem": "{}", "thread_id": 0, "parent_id": -1, "spawn_index": -1, "depth": 0, "role": "root",
            "token_ids": ids, "num_prompt_tokens": PROMPT_TOKENS,
            "trainable": [False] * PROMPT_TOKENS + [True] * num_tokens,
            "logprobs": rng.uniform(-8.0, -6.0, num_tokens).tolist(), "versions": [0] * num_tokens,
            "finish_reason": "stop", "reward": GROUP_REWARDS[e % len(GROUP_REWARDS)], "reason": "bench",
            "episode_total_tokens": None, "episode_critical_path_tokens": None,
        })  # fmt: skip
    return rows


def measure(args: argparse.Namespace, lora_rank: int) -> dict:
    """Step and sync figures of one learner (LoRA when `lora_rank` > 0) on a fresh `small` model."""
    import asyncio

    from learner.lora_config import LoRAConfig
    from learner.lora_merge import AdapterMerger
    from learner.models import init_model
    from learner.presets import ModelConfig
    from learner.rl_config import RLConfig
    from learner.rl_step import RLLearner
    from reasoning.countdown.tokenizer import build_tokenizer
    from reasoning.episode_table import to_table
    from rollout import EngineConfig, make_engine

    tokenizer = build_tokenizer()
    model = init_model(ModelConfig(preset=PRESET), tokenizer)
    engine = make_engine("paged", model, tokenizer, EngineConfig(num_kv_blocks=16))
    lora = LoRAConfig(rank=lora_rank, alpha=2.0 * lora_rank, target_modules=list(args.target_modules))
    seq_len = PROMPT_TOKENS + args.tokens
    config = RLConfig(estimator="grpo", lr=1e-4, seq_len=seq_len, rows=args.rows, grad_clip=1.0)
    # A LoRA run's workers merge the adapters into the base they loaded (learner/lora_merge.py).
    merger = AdapterMerger.from_state(model.state_dict()) if lora_rank else None
    learner = RLLearner(model, config, lora=lora if lora_rank else None)
    rows = to_table(episode_rows(args.episodes, args.tokens, len(tokenizer)))
    learner.step(rows)  # warm-up
    step_times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        learner.step(rows)
        step_times.append(time.perf_counter() - start)
    sync_times = []
    for version in range(1, args.steps + 1):
        start = time.perf_counter()
        weights = learner.weights()
        asyncio.run(engine.update_weights(merger.merge(weights) if merger else weights, version))
        sync_times.append(time.perf_counter() - start)
    engine.close()
    trainable = sum(p.numel() for p in learner.model.parameters() if p.requires_grad)
    figures = {
        "step_s": round(statistics.median(step_times), 3),
        "sync_bytes": sum(a.nbytes for a in weights.values()),
        "sync_s": round(statistics.median(sync_times), 4),
        "sync_tensors": len(weights),
        "trainable_params": trainable,
        "optimizer_state_bytes": 2 * 4 * trainable,
    }
    return figures


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    full = measure(args, 0)
    lora = measure(args, args.rank)
    figures = {
        "preset": PRESET, "rank": args.rank, "target_modules": list(args.target_modules), "threads": args.threads,
        "episodes": args.episodes, "tokens_per_episode": PROMPT_TOKENS + args.tokens,
        **{f"full_{k}": v for k, v in full.items()},
        **{f"lora_{k}": v for k, v in lora.items()},
    }  # fmt: skip
    figures["sync_bytes_ratio"] = round(lora["sync_bytes"] / full["sync_bytes"], 4)
    figures["sync_time_ratio"] = round(lora["sync_s"] / full["sync_s"], 3)
    figures["step_time_ratio"] = round(lora["step_s"] / full["step_s"], 3)
    return figures


def table(f: dict) -> str:
    mib = 2**20
    rows = [
        (
            f"{f['preset']} preset, {f['episodes']} episodes of {f['tokens_per_episode']} tokens, "
            f"{f['threads']} threads; LoRA rank {f['rank']} on {', '.join(f['target_modules'])}"
        ),
        f"  {'':6s} {'step s':>8s} {'sync MiB':>9s} {'sync s':>8s} {'trainable':>11s} {'optim MiB':>10s}",
    ]
    for name in ("full", "lora"):
        rows.append(
            f"  {name:6s} {f[name + '_step_s']:8.3f} {f[name + '_sync_bytes'] / mib:9.2f} {f[name + '_sync_s']:8.4f} "
            f"{f[name + '_trainable_params']:11,d} {f[name + '_optimizer_state_bytes'] / mib:10.2f}"
        )
    rows += [
        f"  LoRA / full: step {f['step_time_ratio']:.3f}, sync bytes {f['sync_bytes_ratio']:.4f}, "
        f"sync time {f['sync_time_ratio']:.3f}",
    ]
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from learner.lora_config import LINEAR_MODULES

    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8; alpha = 2 x rank)")
    parser.add_argument(
        "--target-modules", nargs="+", default=list(LINEAR_MODULES), choices=LINEAR_MODULES, metavar="NAME",
        help="linear layers with adapters (default: all seven)",
    )  # fmt: skip
    parser.add_argument("--episodes", type=int, default=8, help="episodes per batch (default 8)")
    parser.add_argument("--tokens", type=int, default=240, help="output tokens per episode (default 240)")
    parser.add_argument("--rows", type=int, default=8, help="packed rows per micro-batch (default 8)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps and syncs per learner (median; default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a learner actor)")


def report(args: argparse.Namespace) -> int:
    if args.rank < 1:
        from actors.errors import UsageError

        raise UsageError(f"--rank must be at least 1, got {args.rank}")
    figures = run(args)
    if not args.json:
        print(table(figures))
    print(json.dumps(figures))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="treadle bench lora", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return report(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
