"""Shared fixtures: the Countdown tokenizer and fixed-seed random preset models.

Tests under tests/rollout may import learner and reasoning to build models; the rollout
package itself never does.
"""
from __future__ import annotations

import pytest

from learner.models import init_model
from learner.presets import ModelConfig
from reasoning.countdown.tokenizer import build_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny(tokenizer):
    return init_model(ModelConfig(preset="tiny", init_seed=0), tokenizer).eval()


@pytest.fixture(scope="session")
def small(tokenizer):
    return init_model(ModelConfig(preset="small", init_seed=0), tokenizer).eval()
