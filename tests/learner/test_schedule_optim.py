"""Warmup + cosine values by hand, and which parameters Muon takes."""
from __future__ import annotations

import math

import pytest
import torch

from learner.models import init_model
from learner.optim import build_optimizers, muon_parameter_names
from learner.presets import ModelConfig
from learner.schedule import warmup_cosine
from reasoning.countdown.tokenizer import build_tokenizer


def test_warmup_then_cosine_by_hand():
    # peak 1.0, 4 warmup steps, 14 steps in all, floor 0.1: decay over steps 4..13 (9 intervals).
    lr = lambda s: warmup_cosine(s, 1.0, 4, 14, 0.1)  # noqa: E731
    assert [lr(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr(4) == pytest.approx(1.0)
    # No warmup, 11 steps: decay over 10 intervals; step 5 is halfway:
    # 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert warmup_cosine(5, 1.0, 0, 11, 0.1) == pytest.approx(0.55)
    assert lr(13) == pytest.approx(0.1)
    assert lr(8) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 9)))
    assert lr(100) == pytest.approx(0.1)  # past the end: stays at the floor


def test_muon_takes_hidden_matrices_only():
    model = init_model(ModelConfig(), build_tokenizer())
    names = muon_parameter_names(model)
    assert names and all(".layers." in n for n in names)
    assert not any("norm" in n or "embed" in n or "lm_head" in n for n in names)
    adamw, muon = build_optimizers(model, "muon", 1e-3, 0.01, (0.9, 0.99), 1e-3)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert not in_muon & in_adamw and len(in_muon | in_adamw) == len(list(model.parameters()))


def test_adamw_alone_and_no_decay_on_norms():
    model = init_model(ModelConfig(), build_tokenizer())
    (adamw,) = build_optimizers(model, "adamw", 1e-3, 0.1, (0.9, 0.99), 1e-3)
    decayed, not_decayed = adamw.param_groups
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in not_decayed["params"])
