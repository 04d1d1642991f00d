"""`treadle sft CONFIG [key=value ...] [--resume]`: the supervised stage.

The model is `model.path` (a Hugging Face model directory, its tokenizer beside it) or,
without one, a fresh preset with the task's own tokenizer (countdown's, or wordmath's
byte-level BPE with a chat template); `--resume` continues from the run's latest
checkpoint instead. It trains on one of:
- `sft.data_file`, a JSON lines or Parquet file of examples (`messages`, or `prompt` +
  `response`), tokenized with the model's tokenizer and masked so that only the
  assistant's tokens are trained (reasoning/sft_data.py); chat examples need a tokenizer
  with a chat template (the countdown tokenizer has none: use model.path, or raw
  prompt+response examples);
- else, for a generator task with SFT examples of its own (wordmath), those examples,
  made when missing: the problems and the examples of the training problems in RUN/data,
  as `treadle data` writes them (RUN/data/sft.jsonl is then the data file);
- else the task's solver traces (countdown: traces.kind sos, apr or parallel; wordmath:
  traces.kind=parallel, which takes precedence over its examples), made when missing: the
  problems (RUN/data) and the traces of the training problems (RUN/traces-<kind>.parquet),
  tokenized with the model's tokenizer.
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
    # The task's solver traces when traces.kind names a kind it writes (countdown: any;
    # wordmath: parallel), else a data file or the task's own examples.
    on_traces = not config.sft.data_file and config.traces.kind in getattr(task, "trace_kinds", ())
    on_examples = not on_traces and (bool(config.sft.data_file) or hasattr(task, "sft_rows"))
    if not on_examples and not on_traces:
        raise UsageError(
            f"sft.data_file: without one, sft trains on the task's own examples or solver traces, and the "
            f"{task.name} task has neither"
        )  # fmt: skip
    fresh_tokenizer = _fresh_tokenizer(config, task, checkpoint)
    if config.sft.data_file:
        _check_data_file(config, task, fresh_tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    if on_examples:
        data_file = Path(config.sft.data_file) if config.sft.data_file else _generated_examples(task, out)
        model, tokenizer, state = _model(config, checkpoint, fresh_tokenizer)
        families, trained_keys = _example_sequences(config, task, tokenizer, data_file)
    else:
        problems = _training_problems(task, out)
        model, tokenizer, state = _model(config, checkpoint, fresh_tokenizer)
        families, trained_keys = _trace_sequences(config, task, problems, out, tokenizer)

    from learner.checkpoint import save_checkpoint
    from learner.sft import train_sft

    start = time.perf_counter()
    units = _training_units(families, config.sft)
    summary = train_sft(model, tokenizer, units, config.sft, out, trained_keys, state)
    final = save_checkpoint(out / "final", model, tokenizer, None, trained_keys)
    minutes = (time.perf_counter() - start) / 60
    print(f"trained {config.sft.steps} steps in {minutes:.1f} min (last: {summary}); model in {final}")
    return 0


def _training_problems(task, out: Path):
    """The generator task's training problems, written to RUN/data on the first run."""
    from actors.commands.data import generate_files, problem_file

    train = problem_file(task, out / "data", "train")
    if not train.is_file():
        generate_files(task, out / "data")
    return task.read_problems(train)


def _generated_examples(task, out: Path) -> Path:
    """The generator task's SFT examples of its training problems, written to RUN/data on the first run."""
    from actors.commands.data import SFT_FILE, generate_files

    path = out / "data" / SFT_FILE
    if not path.is_file():
        generate_files(task, out / "data")
    return path


def _trace_sequences(config, task, problems, out: Path, tokenizer):
    """(the traces' threads grouped by episode, the keys of their problems)."""
    from actors.commands.traces import write_trace_file
    from reasoning.episode_table import read_threads
    from reasoning.sft_data import problem_keys

    path = out / f"traces-{config.traces.kind}.parquet"
    if not path.is_file():
        write_trace_file(task, problems, config, path, tokenizer)
    table = read_threads(path).select(["episode_id", "token_ids", "trainable", "problem"]).to_pydict()
    episodes: dict[str, list] = {}
    for episode, ids, trainable in zip(table["episode_id"], table["token_ids"], table["trainable"]):
        episodes.setdefault(episode, []).append((ids, trainable))
    return list(episodes.values()), problem_keys(set(table["problem"]), task)


def _training_units(families, sft) -> list:
    """What sft.layout makes of the data (learner/sft.py `training_units`), saying so and
    what does not fit in sft.seq_len."""
    from actors.errors import UsageError
    from learner.sft import training_units

    units = training_units(families, sft.layout, sft.seq_len)
    if sft.layout == "shared":
        print(f"training on {len(units)} prefix trees of {len(families)} episodes; left out {len(families) - len(units)} "
              f"longer than sft.seq_len")  # fmt: skip
    else:
        total = sum(len(family) for family in families)
        if len(units) < total:
            print(f"left out {total - len(units)} threads longer than sft.seq_len")
    if not units:
        raise UsageError(f"sft.seq_len: nothing to train on fits in {sft.seq_len} tokens")
    return units


def _check_data_file(config, task, fresh_tokenizer) -> None:
    from actors.errors import UsageError

    if not Path(config.sft.data_file).is_file():
        raise UsageError(f"sft.data_file: no such file: {config.sft.data_file}")
    if fresh_tokenizer is not None and config.task.prompt_format == "chat" and not fresh_tokenizer.chat_template:
        raise UsageError(
            "model.path: training on sft.data_file with chat prompts needs a tokenizer with a chat template, "
            f"and the {task.name} task's own tokenizer (a fresh preset's) has none; set model.path to a model "
            "directory with one, or task.prompt_format=raw"
        )


def _fresh_tokenizer(config, task, checkpoint: Path | None):
    """The task's own tokenizer when the run starts a fresh preset model, else None."""
    from actors.errors import UsageError

    if checkpoint is not None or config.model.path:
        return None
    if not hasattr(task, "new_tokenizer"):
        raise UsageError(
            f"model.path: the {task.name} task has no tokenizer of its own to start a fresh model; set model.path=DIR"
        )
    return task.new_tokenizer(config.tokenizer)


def _example_sequences(config, task, tokenizer, data_file: Path):
    from actors.errors import UsageError
    from reasoning.sft_data import example_rows, problem_keys
    from reasoning.tasks.prompts import TaskError

    try:
        rows, _ = example_rows(data_file, tokenizer, task, task.prompts)
        kept = [row for row in rows if len(row["token_ids"]) <= config.sft.seq_len]
        keys = problem_keys((row["problem"] for row in kept), task)  # of the examples trained on
    except TaskError as e:
        raise UsageError(str(e)) from None
    if len(kept) < len(rows):
        print(f"left out {len(rows) - len(kept)} examples longer than sft.seq_len")
    if not kept:
        raise UsageError(f"sft.seq_len: no example of {data_file} fits in {config.sft.seq_len} tokens")
    print(f"training on {len(kept)} examples of {data_file}")
    return [[(row["token_ids"], row["trainable"])] for row in kept], keys  # a family of one each


def _model(config, checkpoint: Path | None, fresh_tokenizer):
    """(model, tokenizer, trainer state): the checkpoint's, model.path's, or a fresh preset
    with `fresh_tokenizer` (the task's own)."""
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
    return init_model(config.model, fresh_tokenizer), fresh_tokenizer, None
