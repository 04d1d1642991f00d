"""`treadle bench prune`: cons@k against each early-stopping mode at the same k.

The committed SoS+ model (`checkpoints/countdown-3-sft-sos`) samples k paths for each
held-out countdown-3 problem (the validation split of configs/countdown-3.yaml, never
trained on) on the paged engine; every mode sees the same paths (same seeds) and differs
only in what it cuts (reasoning/multipath/runner.py). Per mode: accuracy of the voted
answer, mean tokens generated per problem, and the token reduction against `vote`.
`judge_auroc` is how well the prune judge's similarity of two paths' prefixes, of the
length at which the runner first judges them, predicts that they end with the same
answer, over all pairs of the vote run's paths.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

CHECKPOINT = "checkpoints/countdown-3-sft-sos"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--problems", type=int, default=200, help="held-out problems (default 200)")
    parser.add_argument("--k", type=int, default=8, help="paths per problem (default 8)")
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="a sequential Countdown model")


def report(args: argparse.Namespace) -> int:
    figures = run(args.checkpoint, args.problems, args.k, quiet=args.json)
    print(json.dumps(figures))
    return 0


def run(checkpoint: str, num_problems: int, k: int, quiet: bool = False) -> dict:
    from configs.experiment import load_config
    from reasoning.countdown.problems import generate_problems
    from rollout.tokenizer import load_tokenizer
    from reasoning.multipath.config import MultiPathConfig
    from reasoning.multipath.runner import MODES, MultiPathRunner
    from reasoning.tasks import make_task
    from rollout import EngineConfig, make_engine

    task = load_config("configs/countdown-3.yaml").task.countdown
    task.num_train = 0  # val is drawn first, so it is the same split without the train set
    _, val = generate_problems(task)
    problems = val[:num_problems]
    tokenizer = load_tokenizer(checkpoint)
    engine = make_engine("paged", checkpoint, tokenizer, EngineConfig())
    config = MultiPathConfig(k=k)
    runner = MultiPathRunner(engine, tokenizer, make_task("countdown"), config, max_tokens=256)
    figures: dict = {"problems": len(problems), "k": k, "temperature": config.temperature}
    episodes_by_mode = {}
    for mode in MODES:
        start = time.perf_counter()

        async def run_mode(mode=mode):
            return await asyncio.gather(*(runner.run(p, mode) for p in problems))

        episodes = asyncio.run(run_mode())
        episodes_by_mode[mode] = episodes
        name = mode.replace("-", "_").replace("@", "_at_")
        figures[f"{name}_accuracy"] = sum(e.verdict.is_correct for e in episodes) / len(episodes)
        figures[f"{name}_tokens"] = sum(e.total_tokens for e in episodes) / len(episodes)
        figures[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
        if not quiet:
            print(f"{mode:11s} accuracy {figures[f'{name}_accuracy']:.3f}  tokens {figures[f'{name}_tokens']:.1f}")
    vote_tokens = figures["vote_tokens"]
    for mode in MODES[1:]:
        name = mode.replace("-", "_").replace("@", "_at_")
        figures[f"{name}_token_reduction"] = round(1 - figures[f"{name}_tokens"] / vote_tokens, 4)
    figures["pass_at_k"] = sum(runner.pass_at_k(e) for e in episodes_by_mode["vote"]) / len(problems)
    figures["judge_auroc"] = judge_auroc(episodes_by_mode["vote"], tokenizer, config)
    engine.close()
    return figures


def judge_auroc(episodes, tokenizer, config) -> float | None:
    from reasoning.multipath.judges import auroc, ngram_similarity
    from reward.formats import last_tagged_span

    # The runner judges a path between rounds, at the first round boundary with
    # prune_min_tokens tokens: score the prefixes it actually compares.
    judged = -(-config.prune_min_tokens // config.chunk_tokens) * config.chunk_tokens
    scores, labels = [], []
    for episode in episodes:
        paths = []
        for thread in episode.threads:
            answer = last_tagged_span(tokenizer.decode(thread.output_ids, skip_special_tokens=True), "<answer>", "</answer>")
            if answer is not None:
                paths.append((thread.output_ids[:judged], answer))
        for (a, answer_a), (b, answer_b) in itertools.combinations(paths, 2):
            n = min(len(a), len(b))
            scores.append(ngram_similarity(a[:n], b[:n], config.prune_ngram))
            labels.append(answer_a == answer_b)
    value = auroc(scores, labels)
    return None if value is None else round(value, 4)
