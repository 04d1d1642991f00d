"""Resumable training checkpoints, written atomically.

A checkpoint directory is a Hugging Face model directory (config.json, model.safetensors,
tokenizer files, loadable offline by AutoModelForCausalLM) plus `trainer_state.pt`
(optimizer states, step, data cursor, RNG states) and `trained_problems.json.gz` (the keys
of the problems the model was trained on, gzip-compressed JSON, which evaluation uses to
tell seen from unseen problems; older checkpoints' plain `trained_problems.json` still
reads), with a manifest of every file's size and SHA-256
(learner/manifest.py) that `load_model` checks. It is written under a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint behind. A LoRA
policy's directory also holds its adapter in peft's format, in adapter/ (learner/lora.py).
"""
from __future__ import annotations

import gzip
import json
import random
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner.manifest import commit_directory, temporary_directory
from learner.models import CheckpointError, save_model

TRAINER_STATE = "trainer_state.pt"
TRAINED_PROBLEMS = "trained_problems.json.gz"
LEGACY_TRAINED_PROBLEMS = "trained_problems.json"


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
    (gzip-compressed JSON: 20,000 word problems' keys take 5.9 MB plain and 0.5 MB
    compressed), so that evaluations report accuracy over unseen problems; None writes
    nothing. The bytes depend on the keys only (no time stamp in the gzip header)."""
    if trained_keys is not None:
        data = json.dumps(trained_keys).encode()
        (Path(directory) / TRAINED_PROBLEMS).write_bytes(gzip.compress(data, mtime=0))


def read_trained_key_list(directory: str | Path) -> list | None:
    """The keys a checkpoint records as JSON gave them (lists), from TRAINED_PROBLEMS or, in
    an older checkpoint, the plain LEGACY_TRAINED_PROBLEMS; None if it records none. A file
    that is not a JSON list of keys (strings, numbers, lists of them) is a CheckpointError
    naming it."""
    directory = Path(directory)
    candidates = (directory / TRAINED_PROBLEMS, directory / LEGACY_TRAINED_PROBLEMS)  # the newer wins
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    try:
        data = path.read_bytes()
        keys = json.loads(gzip.decompress(data) if path.name == TRAINED_PROBLEMS else data)
    except (OSError, EOFError, ValueError, zlib.error) as e:  # truncated or damaged gzip, bad JSON
        raise CheckpointError(f"{path}: unreadable trained-problem keys ({e})") from None
    if not isinstance(keys, list) or not all(_is_key(key) for key in keys):
        raise CheckpointError(f"{path}: not a JSON list of trained-problem keys (strings, numbers, lists of them)")
    return keys


def _is_key(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_key(v) for v in value)
    return isinstance(value, (str, int, float)) or value is None


def load_trained_keys(directory: str | Path) -> set[Any] | None:
    """Keys of the problems a checkpoint was trained on (a task's problem keys, JSON lists
    read back as tuples), or None if it does not record them."""
    keys = read_trained_key_list(directory)
    return None if keys is None else {_frozen(key) for key in keys}


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
