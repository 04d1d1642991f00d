"""The LoRA weight transport: adapters travel, each rollout worker merges them into its base.

A LoRA learner publishes only its adapters (`learner/lora.py` `adapter_weights`): for each
adapted linear module M, `M.lora_A.weight` (A, [r, in]) and `M.lora_B.weight` (B scaled
by alpha / r, [out, r]), fp32, about 3% of a full sync's bytes on the `small` preset with
adapters on all seven matrices (`treadle bench lora`). An `AdapterMerger`, built by the
worker from the base checkpoint it started from, turns them into the merged matrices
W + B A of every touched module and of the other members of its fused group (q/k/v,
gate/up: the paged engine and vLLM store them as one, and vLLM reloads whole layers),
which every backend's `update_weights` takes as a partial update. The base never
changes in a LoRA run, so the merger keeps the base matrices it needs (in the
checkpoint's dtype) and merges from them each time: no error accumulates across syncs,
and a restarted worker is right from its first sync.

Pure torch and numpy: no peft, so the rollout side needs nothing LoRA-specific installed.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"
FUSED_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Matrices an engine may store as one."""


def is_adapter_update(named_arrays: Mapping[str, np.ndarray]) -> bool:
    return any(name.endswith((LORA_A, LORA_B)) for name in named_arrays)


def adapter_modules(named_arrays: Mapping[str, np.ndarray]) -> list[str]:
    """The module names an adapter update carries, in order."""
    return sorted({name[: -len(LORA_A)] for name in named_arrays if name.endswith(LORA_A)})


def synced_modules(modules: list[str]) -> list[str]:
    """`modules` and the other members of their fused groups, sorted."""
    wanted = set(modules)
    for name in modules:
        parent, leaf = name.rsplit(".", 1)
        for group in FUSED_GROUPS:
            if leaf in group:
                wanted.update(f"{parent}.{member}" for member in group)
    return sorted(wanted)


class AdapterMerger:
    """Merges adapter updates into the base matrices it was given (HF names, any dtype)."""

    def __init__(self, base: Mapping[str, torch.Tensor]):
        self.base = {name: tensor.detach() for name, tensor in base.items()}

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> "AdapterMerger":
        """The linear matrices of a base model's state (HF names): what a worker loads from
        the checkpoint its LoRA run started from. The base is frozen for the whole run, so
        tensors shared with a live model stay right."""
        linear = {m for group in FUSED_GROUPS for m in group} | {"o_proj", "down_proj"}
        return cls({name: t for name, t in state.items() if name.endswith(".weight") and name.rsplit(".", 2)[-2] in linear})

    def merge(self, adapters: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """fp32 merged matrices W + B A by HF name, for the touched modules and their fused groups."""
        touched = adapter_modules(adapters)
        merged = {}
        for module in synced_modules(touched):
            name = f"{module}.weight"
            if name not in self.base:
                raise KeyError(f"adapter update names {module}, which the base checkpoint lacks")
            weight = self.base[name].to(torch.float32)
            if module in touched:
                # Copies: the arrays may be Ray's read-only views, and adapters are small.
                a = torch.tensor(adapters[module + LORA_A], dtype=torch.float32)
                b = torch.tensor(adapters[module + LORA_B], dtype=torch.float32)
                weight = torch.addmm(weight, b, a)
            merged[name] = weight.numpy()
        return merged
