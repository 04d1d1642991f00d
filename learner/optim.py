"""Optimizers: AdamW for everything, or Muon for hidden matrices and AdamW for the rest.

Muon (`torch.optim.Muon`) orthogonalises the update of 2-D weight matrices; embeddings,
the LM head and every 1-D parameter (norms, biases) stay on AdamW, as Muon's authors
recommend. Both optimizers are returned as a list so the training loop steps each.
"""
from __future__ import annotations

import torch

EXCLUDED_FROM_MUON = ("embed_tokens", "lm_head")


def muon_parameter_names(model: torch.nn.Module) -> list[str]:
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and p.ndim == 2 and not any(key in name for key in EXCLUDED_FROM_MUON)
    ]


def build_optimizers(
    model: torch.nn.Module,
    kind: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    muon_lr: float,
) -> list[torch.optim.Optimizer]:
    """`kind` "adamw" or "muon"; each optimizer's param groups carry `initial_lr` for scheduling."""
    params = dict(model.named_parameters())
    muon_names = set(muon_parameter_names(model)) if kind == "muon" else set()
    decay = [p for n, p in params.items() if n not in muon_names and p.ndim >= 2 and p.requires_grad]
    no_decay = [p for n, p in params.items() if n not in muon_names and p.ndim < 2 and p.requires_grad]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr,
            betas=betas,
        )
    ]
    if muon_names:
        muon_params = [params[n] for n in sorted(muon_names)]
        optimizers.append(torch.optim.Muon(muon_params, lr=muon_lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"))
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers
