"""`treadle bench prefix-sharing`: the learner on parallel-block episodes, prefix-shared against repeated.

    treadle bench prefix-sharing [--json]        (or: python -m benchmarks.prefix_sharing [--json])

Episodes: the Countdown parallel-block traces of `--config` (default
configs/countdown-3-sft-parallel.yaml) for `--problems` problems drawn by its task
settings, `--samples` traces per problem (trace seeds 0, 1, ...: other sub-call budgets
and tie-breaks) forming one group, as GRPO samples a group per problem. Rewards alternate
1/0 within a group so every group has a signal; behaviour logprobs are 0 and versions 0
(the figures here are about tokens and time, not learning).

The same rows go through the RL learner (learner/rl_step.py, the `tiny` preset unless
the config names another, float32 on this CPU) with two layouts of `rl.*` (learner/rl_batch.py):
- `packed` (repeated): every thread a sequence of its own, so each branch repeats the
  parent's context up to its fork, and each sample the group's prompt;
- `shared`: each group one token tree (learner/prefix_tree.py), every prefix once.
Both train the same tokens with the same values (tests/learner/test_rl_shared_layout.py).

Figures: `repeated_tokens` and `shared_tokens`: the tokens each layout runs through the
model (micro-batch slots that hold a token, copies at branch points included);
`token_ratio` = shared / repeated (goal <= 0.7); `trained_tokens` (the same both ways);
`repeated_tokens_per_s` and `shared_tokens_per_s`: trained tokens per second of a whole
learner step (forward, backward, optimizer), the best of `--repeats` interleaved steps;
`step_speedup` = shared / repeated. Threads: `--threads` (default 1, as a learner actor
has num_cpus=1). The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import time

DEFAULT_CONFIG = "configs/countdown-3-sft-parallel.yaml"


def episode_rows(config_path: str, num_problems: int, samples: int, overrides: list[str]) -> tuple[list[dict], object]:
    """(RL rows of `samples` parallel-block traces per problem, the experiment config)."""
    from configs.experiment import load_config
    from reasoning.tasks import make_task

    config = load_config(config_path, [
        *overrides, f"task.countdown.num_train={num_problems}", "task.countdown.num_val=0", "traces.include_failed=true",
    ])  # fmt: skip
    if config.traces.kind != "parallel":
        raise SystemExit(f"{config_path}: traces.kind is {config.traces.kind}; this bench needs parallel-block traces")
    task = make_task(config.task)
    problems, _ = task.generate()
    tokenizer = task.new_tokenizer(config.tokenizer)
    rows = []
    for sample in range(samples):
        trace_config = type(config.traces)(**{**vars(config.traces), "seed": sample})
        sample_rows, _ = task.trace_rows(problems, trace_config, tokenizer)
        for row in sample_rows:
            group = row["problem_id"] if "problem_id" in row else row["problem"]
            num_out = len(row["token_ids"]) - row["num_prompt_tokens"]
            rows.append({
                **row, "episode_id": f"{row['episode_id']}/s{sample}", "group_id": f"{group}#0",
                "reward": float(sample % 2 == 0), "logprobs": [0.0] * num_out, "versions": [0] * num_out,
            })  # fmt: skip
    return rows, config


def measure(args: argparse.Namespace) -> dict:
    import torch

    from learner.models import init_model
    from learner.rl_batch import build_batch
    from learner.rl_config import RLConfig
    from learner.rl_step import RLLearner
    from reasoning.tasks import make_task

    torch.set_num_threads(args.threads)
    rows, config = episode_rows(args.config, args.problems, args.samples, [])
    tokenizer = make_task(config.task).new_tokenizer(config.tokenizer)
    batches = {
        layout: build_batch(rows, estimator="grpo", seq_len=args.seq_len, rows_per_micro_batch=args.rows, layout=layout)
        for layout in ("packed", "shared")
    }
    tokens = {layout: sum(mb.packed.num_tokens for mb in b.micro_batches) for layout, b in batches.items()}
    trained = {layout: b.num_trained_tokens for layout, b in batches.items()}
    assert trained["packed"] == trained["shared"], trained
    learners = {
        layout: RLLearner(
            init_model(config.model, tokenizer),
            RLConfig(lr=1e-5, seq_len=args.seq_len, rows=args.rows, layout=layout, group_size=args.samples),
        )
        for layout in ("packed", "shared")
    }
    best = {layout: float("inf") for layout in learners}
    for _ in range(args.repeats):  # interleaved, so load from other processes hits both alike
        for layout, learner in learners.items():
            start = time.perf_counter()
            learner.step(rows)
            best[layout] = min(best[layout], time.perf_counter() - start)
    figures = {
        "config": args.config,
        "problems": args.problems,
        "episodes": len({r["episode_id"] for r in rows}),
        "threads": len(rows),
        "repeated_tokens": tokens["packed"],
        "shared_tokens": tokens["shared"],
        "token_ratio": round(tokens["shared"] / tokens["packed"], 4),
        "trained_tokens": trained["shared"],
        "repeated_tokens_per_s": round(trained["packed"] / best["packed"], 1),
        "shared_tokens_per_s": round(trained["shared"] / best["shared"], 1),
        "repeated_step_s": round(best["packed"], 3),
        "shared_step_s": round(best["shared"], 3),
        "threads_torch": args.threads,
    }
    figures["step_speedup"] = round(best["packed"] / best["shared"], 3)
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"experiment with parallel traces (default {DEFAULT_CONFIG})")
    parser.add_argument("--problems", type=int, default=32, help="problems, one group each (default 32)")
    parser.add_argument("--samples", type=int, default=4, help="traces per problem (default 4)")
    parser.add_argument("--seq-len", type=int, default=1024, help="learner row length (default 1024)")
    parser.add_argument("--rows", type=int, default=4, help="rows per micro-batch (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per layout (best is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def report(args: argparse.Namespace) -> int:
    figures = measure(args)
    if not args.json:
        print(
            f"{figures['episodes']} parallel-block episodes ({figures['threads']} threads): "
            f"{figures['repeated_tokens']:,} tokens repeated, {figures['shared_tokens']:,} shared "
            f"(ratio {figures['token_ratio']}); learner {figures['repeated_tokens_per_s']:,.0f} -> "
            f"{figures['shared_tokens_per_s']:,.0f} trained tokens/s ({figures['step_speedup']}x)"
        )
    print(json.dumps(figures))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    return report(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
