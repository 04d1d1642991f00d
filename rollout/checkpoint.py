"""Reading Hugging Face checkpoints and checking weight updates, for every backend.

A model source is a checkpoint directory (config.json + *.safetensors, possibly sharded
with model.safetensors.index.json) or an in-memory `transformers.PreTrainedModel`.
Parameters are always addressed by their Hugging Face names
(`model.layers.0.self_attn.q_proj.weight`, ...), the names a learner ships in a weight
update. Reading `pytorch_model.bin` (pickle) is not supported: save with safetensors.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from rollout.errors import UnsupportedModel, WeightUpdateError

def read_config(source: Any) -> PretrainedConfig:
    if isinstance(source, PreTrainedModel):
        return source.config
    directory = Path(source)
    if not (directory / "config.json").is_file():
        raise UnsupportedModel(f"{directory}: not a model checkpoint (no config.json)")
    return AutoConfig.from_pretrained(str(directory), local_files_only=True)


def read_state_dict(source: Any) -> dict[str, torch.Tensor]:
    """All parameters by Hugging Face name (CPU tensors; shared by reference for a model)."""
    if isinstance(source, PreTrainedModel):
        return {name: t.detach() for name, t in source.state_dict().items()}
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for shard in safetensors_shards(Path(source)):
        tensors.update(load_file(str(shard), device="cpu"))
    return tensors


def safetensors_shards(directory: Path) -> list[Path]:
    """The safetensors files of a Hugging Face checkpoint: `model.safetensors`, or the
    shards (`model-00001-of-00003.safetensors`, ...) that `model.safetensors.index.json`
    maps parameter names to, as `save_pretrained(max_shard_size=...)` writes them."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UnsupportedModel(f"{index}: not a safetensors index (a JSON object with a weight_map)") from e
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise UnsupportedModel(f"{index} names {len(missing)} shard files that are missing, e.g. {missing[0]}")
        return [directory / name for name in names]
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    raise UnsupportedModel(
        f"{directory}: no model.safetensors or model.safetensors.index.json (sharded) to load; "
        "save the model with safetensors"
    )


def eos_token_ids(config: PretrainedConfig, source: Any = None) -> tuple[int, ...]:
    """The ids that end generation: the config's eos_token_id and, when `source` (a model
    or its directory) has a generation config, that one's too (chat models such as
    Llama 3 Instruct list their end-of-turn token only there)."""
    ids: list[int] = []
    for eos in (getattr(config, "eos_token_id", None), _generation_eos(source)):
        if eos is not None:
            ids += [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]
    return tuple(dict.fromkeys(ids))


def _generation_eos(source: Any) -> Any:
    if isinstance(source, PreTrainedModel):
        generation = getattr(source, "generation_config", None)
        return getattr(generation, "eos_token_id", None)
    if source is None:
        return None
    path = Path(source) / "generation_config.json"
    try:
        return json.loads(path.read_text()).get("eos_token_id") if path.is_file() else None
    except (ValueError, AttributeError):
        raise UnsupportedModel(f"{path}: not a JSON object") from None


def plan_weight_update(
    named_arrays: Mapping[str, np.ndarray], targets: Mapping[str, torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pair each update with the tensor it overwrites, or raise WeightUpdateError.

    Every name and shape is checked before the caller copies anything, so a bad update
    leaves the weights untouched."""
    unknown = sorted(set(named_arrays) - set(targets))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise WeightUpdateError(f"unknown parameter names ({len(unknown)}): {shown}")
    plan: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, array in named_arrays.items():
        source = array if isinstance(array, torch.Tensor) else _read_only_view(array)
        target = targets[name]
        if tuple(source.shape) != tuple(target.shape):
            raise WeightUpdateError(f"{name}: shape {tuple(source.shape)}, expected {tuple(target.shape)}")
        if not source.is_floating_point():
            raise WeightUpdateError(f"{name}: dtype {source.dtype} is not a floating-point type")
        plan.append((target, source))
    return plan


@torch.no_grad()
def apply_weight_update(plan: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for target, source in plan:
        target.copy_(source)


def _read_only_view(array: np.ndarray) -> torch.Tensor:
    """A tensor over `array` without a copy. Arrays from Ray's object store are read-only;
    the source is only read (copied into the engine's weights), so torch's warning about
    non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(array))
