"""What `treadle train` reads before Ray starts: the policy, the task's problems, the keys.

`prepare_inputs` reads the task's files (or draws Countdown's problems), loads the
policy's tokenizer, and lets the task and the thread protocol check it (a chat template
for chat prompts, single-token tags for apr/parallel, an importable reward function), so
that bad input is one UsageError naming the key or file, not a failure inside an actor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.errors import UsageError


@dataclass
class RunInputs:
    """What a run reads before Ray starts: the policy directory, the task's problems and
    the problem keys the final policy will have been trained on."""

    policy: str
    train_problems: list
    held_out: list
    trained_keys: list
    """Problem keys: the start policy's (its trained_problems.json.gz) and this run's train problems."""


def prepare_inputs(config: Any) -> RunInputs:
    """Read and check the run's inputs; UsageError naming the key or file otherwise.

    The task's files are read, the tokenizer loaded, and the task and the thread
    protocol check it (chat template, single-token tags, the reward function imports),
    so a bad input fails here and not inside an actor."""
    from configs.experiment import train_policy
    from learner.checkpoint import load_trained_keys
    from reasoning.controllers.factory import make_controller
    from reasoning.tasks import TaskError, make_task
    from rollout.checkpoint import read_config
    from rollout.engine import SamplingParams
    from rollout.errors import UnsupportedModel
    from rollout.paged.weights import ModelShape
    from rollout.tokenizer import TokenizerError, load_tokenizer

    policy = train_policy(config)
    if not policy:
        raise UsageError("train.checkpoint: no policy to start from; set train.checkpoint=DIR or model.path=DIR")
    if not (Path(policy) / "config.json").is_file():
        key = "train.checkpoint" if config.train.checkpoint else "model.path"
        raise UsageError(f"{key}: {policy} is not a model directory (no config.json)")
    task = make_task(config.task)
    try:
        if config.engine.backend == "paged":  # an architecture the paged engine refuses, named now
            ModelShape.from_config(read_config(policy))
        tokenizer = load_tokenizer(policy)
        start_keys = load_trained_keys(policy) or ()
        train_problems, held_out = task.split()
        sampling = SamplingParams(max_tokens=config.train.max_new_tokens)
        make_controller(config.train.mode, None, tokenizer, task, sampling, config.threads)
    except (TaskError, TokenizerError, UnsupportedModel, ValueError) as e:  # ValueError: CheckpointError too
        raise UsageError(str(e)) from None
    finally:
        task.close()
    if not held_out and config.train.eval_every:
        raise UsageError("task.eval_file: evaluations (train.eval_every > 0) need held-out problems; "
                         "give task.eval_file or set train.eval_every=0")  # fmt: skip
    keys = set(start_keys) | {p.key for p in train_problems}
    return RunInputs(policy, train_problems, held_out[: config.train.eval_problems], sorted(keys, key=repr))


def json_key(key: Any) -> Any:
    """A task's key as JSON (tuples as lists), as trained_problems.json.gz stores it."""
    return [json_key(k) for k in key] if isinstance(key, tuple) else key
