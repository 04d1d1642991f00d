"""The checkpoint a `vllm` engine serves: where it lies, its limits, its parameter names.

vLLM loads a model from a Hugging Face checkpoint directory, so an in-memory
`PreTrainedModel` is saved (safetensors) to a temporary directory that lives as long as
the engine. Weight updates are checked here, in the caller's process, against the
checkpoint's parameter names and shapes (read from the safetensors headers, no tensor
data), with the same rules and messages as every backend (`plan_weight_update`), so a
bad update raises WeightUpdateError before anything reaches vLLM. A tied output head may
be sent as `lm_head.weight` (vLLM's loader skips it, the embedding is the head).
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from rollout.checkpoint import eos_token_ids, plan_weight_update, read_config, safetensors_shards


@dataclass
class Checkpoint:
    directory: Path
    vocab_size: int
    max_position_embeddings: int
    eos_token_ids: tuple[int, ...]
    shapes: dict[str, tuple[int, ...]]
    """Parameter shapes by Hugging Face name."""
    temporary: bool = False
    """The directory was made for this engine and is deleted by `cleanup`."""

    def check_update(self, named_arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The update as numpy arrays, or WeightUpdateError (unknown name, wrong shape,
        not floating point)."""
        targets = {name: torch.empty(shape, device="meta") for name, shape in self.shapes.items()}
        plan_weight_update(named_arrays, targets)
        return {name: _numpy(array) for name, array in named_arrays.items()}

    def cleanup(self) -> None:
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)


def checkpoint_of(model: Any) -> Checkpoint:
    """A Checkpoint for a checkpoint directory or an in-memory model (saved to a temp dir)."""
    if not isinstance(model, PreTrainedModel):
        return _read(Path(model), temporary=False)
    directory = Path(tempfile.mkdtemp(prefix="treadle-vllm-"))
    try:
        model.save_pretrained(str(directory), safe_serialization=True)
        return _read(directory, temporary=True)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _read(directory: Path, temporary: bool) -> Checkpoint:
    config = read_config(str(directory))
    shapes = _parameter_shapes(directory)
    if getattr(config, "tie_word_embeddings", False) and "model.embed_tokens.weight" in shapes:
        shapes.setdefault("lm_head.weight", shapes["model.embed_tokens.weight"])
    return Checkpoint(
        directory=directory, vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings, eos_token_ids=eos_token_ids(config, directory),
        shapes=shapes, temporary=temporary,
    )


def _parameter_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for shard in safetensors_shards(directory):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def _numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)
