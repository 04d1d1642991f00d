"""`treadle sft CONFIG [key=value ...] [--resume]`: the supervised stage on search traces.

Everything a run needs is made when missing: the task's problems (RUN/data), the traces
of the training problems (RUN/traces-<kind>.parquet), a fresh preset model (or
`model.path`). Then it trains (learner/sft.py) with checkpoints in RUN/checkpoints and
writes the final model to RUN/final, with the keys of the problems it was trained on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sft",
        help="supervised training of a preset model on solver traces",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML, e.g. configs/countdown-3-sft-sos.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. sft.steps=100")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of the run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from actors.errors import UsageError
    from configs.experiment import load_config, run_dir
    from configs.typed import to_dict

    config = load_config(args.config, args.overrides)
    out = run_dir(config)
    from learner.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(out / "checkpoints")
    if checkpoint is not None and not args.resume:
        raise UsageError(f"{out} already has checkpoints; pass --resume to continue, or set run_dir or name")
    if args.resume and checkpoint is None:
        raise UsageError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    problems = _training_problems(config, out)
    sequences, trained_keys = _trace_sequences(config, problems, out)
    model, tokenizer, state = _model(config, checkpoint)

    from learner.checkpoint import save_checkpoint
    from learner.sft import train_sft

    start = time.perf_counter()
    summary = train_sft(model, tokenizer, sequences, config.sft, out, trained_keys, state)
    final = save_checkpoint(out / "final", model, tokenizer, None, trained_keys)
    minutes = (time.perf_counter() - start) / 60
    print(f"trained {config.sft.steps} steps in {minutes:.1f} min (last: {summary}); model in {final}")
    return 0


def _training_problems(config, out: Path):
    from actors.commands.data import generate_files
    from reasoning.countdown.problem_files import read_problems

    train = out / "data" / "train.parquet"
    if not train.is_file():
        generate_files(config.task, out / "data")
    return read_problems(train)


def _trace_sequences(config, problems, out: Path):
    from actors.commands.traces import write_trace_file
    from reasoning.episode_table import read_threads

    path = out / f"traces-{config.traces.kind}.parquet"
    if not path.is_file():
        write_trace_file(problems, config, path)
    table = read_threads(path).select(["token_ids", "trainable", "numbers", "target"]).to_pydict()
    sequences = [
        (ids, trainable)
        for ids, trainable in zip(table["token_ids"], table["trainable"])
        if len(ids) <= config.sft.seq_len
    ]
    if len(sequences) < len(table["token_ids"]):
        print(f"left out {len(table['token_ids']) - len(sequences)} threads longer than sft.seq_len")
    keys = sorted({(tuple(sorted(n)), t) for n, t in zip(table["numbers"], table["target"])})
    return sequences, [[list(numbers), target] for numbers, target in keys]


def _model(config, checkpoint: Path | None):
    from learner.checkpoint import load_trainer_state
    from learner.models import init_model, load_model
    from reasoning.countdown.tokenizer import build_tokenizer, load_tokenizer

    if checkpoint is not None:
        print(f"resuming from {checkpoint}")
        return load_model(checkpoint), load_tokenizer(checkpoint), load_trainer_state(checkpoint)
    if config.model.path:
        return load_model(config.model.path, config.model.dtype), load_tokenizer(config.model.path), None
    tokenizer = build_tokenizer(config.tokenizer.number_digits)
    return init_model(config.model, tokenizer), tokenizer, None
