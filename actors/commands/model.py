"""`treadle model init`: a randomly initialised preset model and its tokenizer, in HF format."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="create model checkpoints")
    actions = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "init",
        help="write a randomly initialised preset model with its tokenizer",
        description="Build the tokenizer and a preset model from an experiment config "
        "and save both in Hugging Face format (config.json, model.safetensors, "
        "tokenizer.json), loadable offline with AutoModelForCausalLM / AutoTokenizer.",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="checkpoint directory")
    p.add_argument("--config", metavar="CONFIG", help="experiment YAML (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. model.preset=small")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from actors.commands.common import load_experiment

    config = load_experiment(args.config, args.overrides)

    from learner.models import count_parameters, init_model, save_model
    from reasoning.countdown.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(config.tokenizer.number_digits)
    model = init_model(config.model, tokenizer)
    save_model(model, tokenizer, args.out)
    print(
        f"wrote {config.model.preset} ({count_parameters(model):,} parameters, "
        f"vocabulary {len(tokenizer)}) to {args.out}"
    )
    return 0
