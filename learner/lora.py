"""LoRA policies with peft: adapters are trained, merged matrices are synced, adapters are saved.

Training: `add_adapters` wraps the policy with peft's `get_peft_model` (adapters on the
`model.lora.target_modules` of every decoder layer, everything else frozen). The learner
keeps training the unwrapped model (`PeftModel.get_base_model()`: the same modules, with
each targeted `nn.Linear` replaced by a LoRA layer), so the full and chunked logprob
heads reach `model.model` and `model.lm_head` as before; the optimizer and the
data-parallel all-reduce see only parameters with `requires_grad` (the adapters).

Weight sync: the adapters travel (`adapter_weights`: A and alpha/r-scaled B of every
adapted module, fp32) and each rollout worker merges them into the base matrices it
loaded (learner/lora_merge.py), so the engines get merged matrices as a partial update
that every backend's `update_weights` takes unchanged. Measured by `treadle bench lora`
(`small` preset, rank 8, adapters on all seven linear layers): the merged matrices are
97% of a full sync's bytes (only the embedding and norms stay home), the adapters 3.3%.
`merged_weights` computes the same merged matrices on the learner's side (the
bench's and the tests' reference).

Checkpoints: adapters are written in peft's format (adapter_config.json +
adapter_model.safetensors, base_model_name_or_path = the base checkpoint, with the
tokenizer beside them), which `merge_adapter` (`treadle model merge-lora`) turns into a
plain Hugging Face model. A run's RUN/checkpoints/step-N/ holds the adapter as policy/ and
learner.pt holds the adapters and their optimizer states only (the frozen base and a
KL reference come back from the base checkpoint on resume); RUN/final/ is the merged
model, which `treadle eval` and every engine load, with the adapter in RUN/final/adapter/.

Not covered: DoRA and other peft variants, adapters on the embedding or LM head, several
adapters at once, vLLM's own LoRA serving (it gets merged matrices).
"""
from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner import lora_merge
from learner.lora_config import LoRAConfig
from learner.models import CheckpointError

ADAPTER = "default"  # peft's name of the one adapter
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SUBDIR = "adapter"  # a LoRA run's final policy (a merged model) keeps its adapter here

Gather = Callable[[torch.Tensor], torch.Tensor]


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        message = "LoRA (model.lora.rank > 0, merge-lora) needs peft: pip install 'treadle[lora]'"
        raise CheckpointError(message) from None
    return peft


def add_adapters(model: torch.nn.Module, config: LoRAConfig) -> Any:
    """Wrap `model` in place with fresh adapters (A random from `config.init_seed`, B = 0, so
    the policy is unchanged); every other parameter is frozen. Returns the `PeftModel`
    (its `get_base_model()` is `model`)."""
    peft = _peft()
    settings = peft.LoraConfig(
        r=config.rank, lora_alpha=config.alpha, target_modules=list(config.target_modules),
        lora_dropout=config.dropout, bias="none", task_type="CAUSAL_LM",
    )  # fmt: skip
    # Seeded, so every data-parallel rank (and a resumed run) starts from the same adapters.
    with _quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        return peft.get_peft_model(model, settings)


def lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    """Module name -> LoRA layer, in module order."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def synced_modules(model: torch.nn.Module) -> list[str]:
    """Names of the linear modules a merged sync carries: every module with an adapter and
    the other members of its fused groups, in module order."""
    wanted = set(lora_merge.synced_modules(list(lora_layers(model))))
    return [name for name, _ in model.named_modules() if name in wanted]


def adapter_weights(model: torch.nn.Module, gather: Gather = lambda t: t) -> dict[str, np.ndarray]:
    """What a LoRA weight sync sends (learner/lora_merge.py): fp32 A and alpha/r-scaled B of
    every adapted module, named `<module>.lora_A.weight` / `<module>.lora_B.weight`
    (a collective under FSDP2: every rank calls this, in the same module order)."""
    arrays = {}
    for name, layer in lora_layers(model).items():
        a = gather(layer.lora_A[ADAPTER].weight.detach()).float()
        b = gather(layer.lora_B[ADAPTER].weight.detach()).float() * layer.scaling[ADAPTER]
        arrays[name + lora_merge.LORA_A] = a.cpu().numpy()
        arrays[name + lora_merge.LORA_B] = b.cpu().numpy()
    return arrays


def merged_weights(model: torch.nn.Module, gather: Gather = lambda t: t) -> dict[str, np.ndarray]:
    """fp32 numpy copies of the synced matrices by Hugging Face name, adapters merged in:
    W + (B @ A) * alpha / r. `gather` makes a sharded tensor whole (a collective under FSDP2:
    every rank calls this, in the same module order)."""
    layers = lora_layers(model)
    modules = dict(model.named_modules())
    arrays = {}
    for name in synced_modules(model):
        if name in layers:  # one fresh tensor: W + scaling * (B @ A)
            layer = layers[name]
            weight = gather(layer.base_layer.weight.detach()).float()
            a = gather(layer.lora_A[ADAPTER].weight.detach()).float()
            b = gather(layer.lora_B[ADAPTER].weight.detach()).float()
            merged = torch.addmm(weight, b, a, alpha=layer.scaling[ADAPTER])
        else:
            merged = gather(modules[name].weight.detach()).float().clone()
        arrays[f"{name}.weight"] = merged.cpu().numpy()
    return arrays


def adapter_bytes(model: torch.nn.Module) -> int:
    """Bytes of the adapters alone in fp32 (what an adapter-only sync would move)."""
    return sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)


def trainable_state(model: torch.nn.Module, gather: Gather = lambda t: t) -> dict[str, torch.Tensor]:
    """The adapter parameters by their names in `model` (a collective under FSDP2)."""
    return {name: gather(p.detach()) for name, p in model.named_parameters() if p.requires_grad}


def save_adapter(peft_model: Any, state: dict[str, torch.Tensor], directory: str | Path, base: str | Path) -> None:
    """Write the adapter in peft's format into `directory`: adapter_config.json (with the
    absolute path of `base` as base_model_name_or_path) and adapter_model.safetensors.
    `state` is `trainable_state(peft_model)` (names with the peft wrapper's prefix)."""
    peft_model.peft_config[ADAPTER].base_model_name_or_path = str(Path(base).resolve())
    state = {name: tensor.to("cpu") for name, tensor in state.items()}
    peft_model.save_pretrained(str(directory), state_dict=state, safe_serialization=True)


def adapter_base(adapter_dir: str | Path) -> str | None:
    """The base checkpoint an adapter directory names (base_model_name_or_path), if any."""
    return _adapter_config(Path(adapter_dir)).get("base_model_name_or_path")


def merge_adapter(adapter_dir: str | Path, base_dir: str | Path) -> torch.nn.Module:
    """The base model (fp32) with the adapter merged into its matrices: a plain
    transformers model, no peft layers left."""
    from learner.models import load_model

    adapter_dir = Path(adapter_dir)
    _adapter_config(adapter_dir)
    base = load_model(base_dir)
    try:
        with _quiet():
            wrapped = _peft().PeftModel.from_pretrained(base, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"{adapter_dir}: the adapter does not fit the base {base_dir}: {e}") from None
    return wrapped.merge_and_unload()


@contextlib.contextmanager
def _quiet():
    """peft calls `is_gradient_checkpointing`, which transformers 5 deprecates."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / ADAPTER_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{adapter_dir}: not a peft adapter (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path}: not JSON ({e})") from None
    kind = config.get("peft_type") if isinstance(config, dict) else None
    if kind != "LORA":
        raise CheckpointError(f"{path}: not a LoRA adapter config (peft_type {kind!r})")
    return config
