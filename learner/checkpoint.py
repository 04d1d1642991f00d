"""Resumable training checkpoints, written atomically.

A checkpoint directory is a Hugging Face model directory (config.json, model.safetensors,
tokenizer files, loadable offline by AutoModelForCausalLM) plus `trainer_state.pt`
(optimizer states, step, data cursor, RNG states) and `trained_problems.json` (the keys,
sorted numbers + target, of the problems the model was trained on, which evaluation
uses to tell seen from unseen problems), with a manifest of every file's size and SHA-256
(learner/manifest.py) that `load_model` checks. It is written under a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint behind. A LoRA
policy's directory also holds its adapter in peft's format, in adapter/ (learner/lora.py).
"""
from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner.manifest import commit_directory, temporary_directory
from learner.models import CheckpointError, save_model

TRAINER_STATE = "trainer_state.pt"
TRAINED_PROBLEMS = "trained_problems.json"


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    tokenizer: Any,
    trainer_state: dict[str, Any] | None,
    trained_keys: list | None,
    extras: Callable[[Path], None] | None = None,
) -> Path:
    """`extras`, if given, writes more files into the checkpoint being built (its argument)
    before the manifest covers them, e.g. a LoRA policy's adapter/."""
    tmp = temporary_directory(directory)
    save_model(model, tokenizer, tmp)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / TRAINER_STATE)
    write_trained_keys(tmp, trained_keys)
    if extras is not None:
        extras(tmp)
    return commit_directory(tmp, directory)


def load_trainer_state(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {directory} is not a resumable checkpoint")
    try:
        return torch.load(path, weights_only=False)
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable trainer state ({e})") from None


def write_trained_keys(directory: str | Path, trained_keys: list | None) -> None:
    """TRAINED_PROBLEMS in `directory`: the keys of the problems a policy was trained on
    (JSON), so that evaluations report accuracy over unseen problems; None writes nothing."""
    if trained_keys is not None:
        (Path(directory) / TRAINED_PROBLEMS).write_text(json.dumps(trained_keys))


def load_trained_keys(directory: str | Path) -> set[Any] | None:
    """Keys of the problems a checkpoint was trained on (a task's problem keys, JSON lists
    read back as tuples), or None if it does not record them."""
    path = Path(directory) / TRAINED_PROBLEMS
    if not path.is_file():
        return None
    return {_frozen(key) for key in json.loads(path.read_text())}


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The `step-N` directory with the largest N, or None."""
    directory = Path(checkpoints_dir)
    steps = sorted(
        (int(p.name.split("-", 1)[1]), p)
        for p in directory.glob("step-*")
        if p.is_dir() and p.name.split("-", 1)[1].isdigit()
    )
    return steps[-1][1] if steps else None


def prune_checkpoints(checkpoints_dir: str | Path, keep: int) -> None:
    directory = Path(checkpoints_dir)
    steps = sorted(
        (int(p.name.split("-", 1)[1]), p)
        for p in directory.glob("step-*")
        if p.is_dir() and p.name.split("-", 1)[1].isdigit()
    )
    for _, path in steps[:-keep]:
        shutil.rmtree(path)
