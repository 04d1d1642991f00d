"""`treadle sft CONFIG [key=value ...] [--resume]`: the supervised stage.

The model is `model.path` (a Hugging Face model directory, its tokenizer beside it) or,
without one, a fresh preset with the Countdown tokenizer; `--resume` continues from the
run's latest checkpoint instead. It trains on one of:
- `sft.data_file`, a JSON lines or Parquet file of examples (`messages`, or `prompt` +
  `response`), tokenized with the model's tokenizer and masked so that only the
  assistant's tokens are trained (reasoning/sft_data.py); a fresh preset cannot apply
  a chat template, so without model.path only raw prompt+response examples work;
- else the task's search traces, made when missing: the problems (RUN/data) and the
  traces of the training problems (RUN/traces-<kind>.parquet).
Sequences longer than sft.seq_len are left out. It trains (learner/sft.py) with
checkpoints in RUN/checkpoints and writes the final model to RUN/final, with the keys of
the problems it was trained on (those of the data file's rows the task recognises).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sft",
        help="supervised training on solver traces or a data file of examples",
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
    from reasoning.tasks import make_task

    config = load_config(args.config, args.overrides)
    out = run_dir(config)
    from learner.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(out / "checkpoints")
    if checkpoint is not None and not args.resume:
        raise UsageError(f"{out} already has checkpoints; pass --resume to continue, or set run_dir or name")
    if args.resume and checkpoint is None:
        raise UsageError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    task = make_task(config.task)
    if config.sft.data_file:
        _check_data_file(config, checkpoint)
    elif not hasattr(task, "trace_rows"):
        raise UsageError(
            f"sft.data_file: without one, sft trains on the task's solver traces, and the {task.name} task has none"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    if config.sft.data_file:
        model, tokenizer, state = _model(config, task, checkpoint)
        sequences, trained_keys = _example_sequences(config, task, tokenizer)
    else:
        problems = _training_problems(task, out)
        sequences, trained_keys = _trace_sequences(config, task, problems, out)
        model, tokenizer, state = _model(config, task, checkpoint)

    from learner.checkpoint import save_checkpoint
    from learner.sft import train_sft

    start = time.perf_counter()
    summary = train_sft(model, tokenizer, sequences, config.sft, out, trained_keys, state)
    final = save_checkpoint(out / "final", model, tokenizer, None, trained_keys)
    minutes = (time.perf_counter() - start) / 60
    print(f"trained {config.sft.steps} steps in {minutes:.1f} min (last: {summary}); model in {final}")
    return 0


def _training_problems(task, out: Path):
    """The generator task's training problems, written to RUN/data on the first run."""
    from actors.commands.data import generate_files

    train = out / "data" / "train.parquet"
    if not train.is_file():
        generate_files(task, out / "data")
    return task.read_problems(train)


def _trace_sequences(config, task, problems, out: Path):
    from actors.commands.traces import write_trace_file
    from reasoning.episode_table import read_threads
    from reasoning.sft_data import problem_keys

    path = out / f"traces-{config.traces.kind}.parquet"
    if not path.is_file():
        write_trace_file(task, problems, config, path)
    table = read_threads(path).select(["token_ids", "trainable", "problem"]).to_pydict()
    sequences = [
        (ids, trainable)
        for ids, trainable in zip(table["token_ids"], table["trainable"])
        if len(ids) <= config.sft.seq_len
    ]
    if len(sequences) < len(table["token_ids"]):
        print(f"left out {len(table['token_ids']) - len(sequences)} threads longer than sft.seq_len")
    return sequences, problem_keys(set(table["problem"]), task)


def _check_data_file(config, checkpoint: Path | None) -> None:
    from actors.errors import UsageError

    if not Path(config.sft.data_file).is_file():
        raise UsageError(f"sft.data_file: no such file: {config.sft.data_file}")
    if checkpoint is None and not config.model.path and config.task.prompt_format == "chat":
        raise UsageError(
            "model.path: training on sft.data_file with chat prompts needs a model directory with its "
            "tokenizer's chat template (a fresh preset has the Countdown tokenizer); set model.path, "
            "or task.prompt_format=raw"
        )


def _example_sequences(config, task, tokenizer):
    from actors.errors import UsageError
    from reasoning.sft_data import example_rows, problem_keys
    from reasoning.tasks.prompts import TaskError

    try:
        rows, _ = example_rows(config.sft.data_file, tokenizer, task, task.prompts)
        kept = [row for row in rows if len(row["token_ids"]) <= config.sft.seq_len]
        keys = problem_keys((row["problem"] for row in kept), task)  # of the examples trained on
    except TaskError as e:
        raise UsageError(str(e)) from None
    if len(kept) < len(rows):
        print(f"left out {len(rows) - len(kept)} examples longer than sft.seq_len")
    if not kept:
        raise UsageError(f"sft.seq_len: no example of {config.sft.data_file} fits in {config.sft.seq_len} tokens")
    print(f"training on {len(kept)} examples of {config.sft.data_file}")
    return [(row["token_ids"], row["trainable"]) for row in kept], keys


def _model(config, task, checkpoint: Path | None):
    from actors.errors import UsageError
    from learner.checkpoint import load_trainer_state
    from learner.models import CheckpointError, init_model, load_model
    from rollout.tokenizer import TokenizerError, load_tokenizer

    if checkpoint is not None:
        print(f"resuming from {checkpoint}")
        return load_model(checkpoint), load_tokenizer(checkpoint), load_trainer_state(checkpoint)
    if config.model.path:
        try:
            return load_model(config.model.path, config.model.dtype), load_tokenizer(config.model.path), None
        except (CheckpointError, TokenizerError) as e:
            raise UsageError(f"model.path: {e}") from None
    if not hasattr(task, "new_tokenizer"):
        raise UsageError(f"model.path: the {task.name} task has no tokenizer of its own to start a fresh model; set model.path=DIR")
    tokenizer = task.new_tokenizer(config.tokenizer)
    return init_model(config.model, tokenizer), tokenizer, None
