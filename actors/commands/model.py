"""`treadle model init`: a randomly initialised preset model and its tokenizer, in HF format.
`treadle model add-thread-tokens`: a pretrained model with the thread markup as single tokens.
`treadle model merge-lora`: a LoRA adapter (peft format) merged into its base, in HF format.
`treadle model convert`: a model's weights saved in another dtype (e.g. bf16, half the bytes)."""
from __future__ import annotations

import argparse
from pathlib import Path

SAVED_DTYPES = ("float32", "bfloat16", "float16")
"""learner.models.DTYPES's names, spelled out so that the CLI starts without importing torch
(a test keeps them equal)."""


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
    p = actions.add_parser(
        "add-thread-tokens",
        help="make the thread markup tags single tokens of a pretrained model",
        description="Load a local Hugging Face model and its tokenizer, add every thread markup "
        "tag (<spawn>, </spawn>, <thread>, <parallel>, <answer>, ...) that is not yet one token "
        "as an ordinary added token, give the new embedding rows the mean of the old ones, and "
        "save model and tokenizer to --out. Tags that are already single tokens are left alone, "
        "so running it on its own output adds nothing.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help="the Hugging Face checkpoint to extend")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the extended checkpoint")
    p.add_argument(
        "--pad-to-multiple-of", type=int, default=64, metavar="N",
        help="when the embedding must grow, round its rows up to a multiple of N (default 64)",
    )  # fmt: skip
    p.set_defaults(run=run_add_thread_tokens)
    p = actions.add_parser(
        "merge-lora",
        help="merge a LoRA adapter into its base model and save a plain Hugging Face model",
        description="Load the base model, apply a LoRA adapter in peft's format (adapter_config.json + "
        "adapter_model.safetensors, as `treadle train` writes with model.lora.rank > 0: "
        "RUN/checkpoints/step-N/policy/ and RUN/final/adapter/), merge W + B A * alpha / r into "
        "every adapted matrix, and save the merged model with its tokenizer to --out (config.json, "
        "model.safetensors, tokenizer files; loadable with AutoModelForCausalLM and by every "
        "engine). The tokenizer and the trained problems' keys come from the adapter directory when "
        "it has them, else from the base. Example: treadle model merge-lora --adapter "
        "runs/x/checkpoints/step-20/policy --out merged/step-20",
    )
    p.add_argument("--adapter", required=True, type=Path, metavar="DIR", help="the adapter directory (peft format)")
    p.add_argument(
        "--base", type=Path, metavar="DIR",
        help="the base model the adapter was trained on (default: base_model_name_or_path of adapter_config.json)",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the merged checkpoint")
    p.add_argument(
        "--dtype", default="auto", choices=("auto", *SAVED_DTYPES),
        help="dtype of the saved weights (default auto: the base checkpoint's; the merge itself is fp32)",
    )  # fmt: skip
    p.set_defaults(run=run_merge_lora)
    p = actions.add_parser(
        "convert",
        help="save a model's weights in another dtype",
        description="Load a local Hugging Face model and save it with its weights in --dtype, with its "
        "tokenizer, chat template and the trained problems' keys, to --out (a new model directory "
        "with a manifest; a training checkpoint's optimizer state and a LoRA run's adapter/ are not "
        "carried, so --resume needs the original; --out must not overlap --model, and an existing "
        "--out is replaced only if treadle wrote it). bfloat16 halves an fp32 model's bytes; treadle "
        "loads it back in fp32 for training and the CPU engines. Example: treadle model convert "
        "--model runs/x/final --out checkpoints/x --dtype bfloat16",
    )
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help="the Hugging Face model to convert")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the converted model")
    p.add_argument(
        "--dtype", required=True, choices=SAVED_DTYPES, help="dtype of the saved weights"
    )
    p.set_defaults(run=run_convert)


def run_add_thread_tokens(args: argparse.Namespace) -> int:
    from actors.errors import UsageError

    if args.pad_to_multiple_of < 1:
        raise UsageError(f"--pad-to-multiple-of must be at least 1, got {args.pad_to_multiple_of}")

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from learner.models import CheckpointError
    from learner.thread_tokens import TokenAdditionError, add_thread_tokens
    from reasoning.markup import MARKUP_TAGS, ThreadTokenError, tag_token_ids

    hf_logging.disable_progress_bar()
    try:
        result = add_thread_tokens(args.model, args.out, MARKUP_TAGS, args.pad_to_multiple_of)
        tag_token_ids(AutoTokenizer.from_pretrained(str(args.out), local_files_only=True))  # the controllers' check
    except (CheckpointError, TokenAdditionError, ThreadTokenError) as e:
        raise UsageError(str(e)) from None
    if result.added:
        listed = ", ".join(f"{tag}={token_id}" for tag, token_id in result.added.items())
        print(f"added {len(result.added)} thread tokens: {listed}")
        print(f"embedding rows {result.rows_before} -> {result.rows_after}; new rows are the mean of the old ones")
    else:
        print(f"nothing to add: all {len(result.present)} thread tags are single tokens already")
    print(f"wrote {args.out}")
    return 0


def run_merge_lora(args: argparse.Namespace) -> int:
    from actors.errors import UsageError
    from learner.checkpoint import read_trained_key_list, save_checkpoint
    from learner.lora import adapter_base, merge_adapter
    from learner.models import DTYPES, CheckpointError
    from rollout.tokenizer import TokenizerError, load_tokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        base = args.base or adapter_base(args.adapter)
        if not base:
            raise UsageError(f"{args.adapter}: adapter_config.json names no base model; pass --base DIR")
        base = Path(base)
        check_output_directory(args.out, args.adapter, base)
        merged = merge_adapter(args.adapter, base)
        has_tokenizer = (args.adapter / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(args.adapter if has_tokenizer else base)
        keys = read_trained_key_list(args.adapter)
        keys = read_trained_key_list(base) if keys is None else keys
    except (CheckpointError, TokenizerError) as e:
        raise UsageError(str(e)) from None
    dtype = _saved_dtype(base) if args.dtype == "auto" else args.dtype
    save_checkpoint(args.out, merged.to(DTYPES[dtype]), tokenizer, None, keys)
    print(f"merged {args.adapter} into {base}; wrote {args.out} ({dtype})")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from actors.errors import UsageError
    from learner.checkpoint import read_trained_key_list, save_checkpoint
    from learner.models import CheckpointError, load_model
    from rollout.tokenizer import TokenizerError, load_tokenizer
    from transformers.utils import logging as hf_logging

    check_output_directory(args.out, args.model)
    hf_logging.disable_progress_bar()
    try:
        model = load_model(args.model, args.dtype)
        tokenizer = load_tokenizer(args.model)
        keys = read_trained_key_list(args.model)
    except (CheckpointError, TokenizerError) as e:
        raise UsageError(str(e)) from None
    save_checkpoint(args.out, model, tokenizer, None, keys)
    print(f"wrote {args.out} ({args.dtype}, from {args.model})")
    return 0


def check_output_directory(out: Path, *sources: Path) -> None:
    """UsageError unless `out` may be replaced whole (as save_checkpoint replaces it): it must
    not be a source, hold one or lie inside one, and if it exists it must be empty or a
    model directory treadle wrote (with its manifest), so that nothing else is lost."""
    from actors.errors import UsageError
    from learner.manifest import MANIFEST

    target = out.resolve()
    for source in sources:
        where = source.resolve()
        if target == where or target in where.parents or where in target.parents:
            raise UsageError(
                f"--out {out}: it is {source}, holds it or lies inside it; write to a directory of its own"
            )
    if target.is_file() or (target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file()):
        raise UsageError(f"--out {out}: exists and is not a model directory treadle wrote (no {MANIFEST}); "
                         "nothing was replaced: remove it or choose another")  # fmt: skip


def _saved_dtype(base: Path) -> str:
    """The dtype a base checkpoint's config.json records, where treadle can save it; else float32."""
    import json

    config = json.loads((base / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype")
    return dtype if dtype in SAVED_DTYPES else "float32"


def run(args: argparse.Namespace) -> int:
    from actors.commands.common import load_experiment

    config = load_experiment(args.config, args.overrides)

    from actors.errors import UsageError
    from learner.models import count_parameters, init_model, save_model
    from reasoning.tasks import make_task

    task = make_task(config.task)
    if not hasattr(task, "new_tokenizer"):
        raise UsageError(f"task.name: the {task.name} task has no tokenizer of its own; start from a model.path instead")
    tokenizer = task.new_tokenizer(config.tokenizer)
    model = init_model(config.model, tokenizer)
    save_model(model, tokenizer, args.out)
    print(
        f"wrote {config.model.preset} ({count_parameters(model):,} parameters, "
        f"vocabulary {len(tokenizer)}) to {args.out}"
    )
    return 0
